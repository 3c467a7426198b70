//! A span per statement, for the statements run on behalf of a sampled trace: diesel reports
//! each statement's start and end to the connection's instrumentation, and the span's parent is
//! OpenTelemetry's current context then (the executors make a sampled request's, or a batch's,
//! current while its queries run). Only pools of an instance with traces on have it.
//!
//! A span names the operation and the table, never a parameter's value: the statement's text is
//! read only up to where diesel would start listing its binds.

use std::collections::VecDeque;
use std::fmt::{self, Write};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use opentelemetry::trace::{Span, SpanKind, Status};
use opentelemetry::KeyValue;

use crate::traces::{self, SdkSpan, TraceContext, Traces};

/// Where diesel's text of a statement ends and the list of its binds begins.
const BINDS: &str = " -- binds: ";
/// Statements longer than this are summarised from their start.
const MAX_TEXT: usize = 4096;

pub(super) struct StatementSpans {
    traces: Traces,
    /// One per statement started and not yet finished, in order (a connection may pipeline):
    /// `None` for those that no sampled trace ran.
    open: VecDeque<Option<SdkSpan>>,
}

impl StatementSpans {
    pub(super) fn new(traces: Traces) -> Self {
        Self {
            traces,
            open: VecDeque::new(),
        }
    }

    fn start(&self, statement: &dyn fmt::Display) -> Option<SdkSpan> {
        let parent = TraceContext::current();
        if !traces::sampled(&parent) {
            return None;
        }
        let mut text = SqlOnly(String::new());
        // Stopped with an error on purpose where the binds begin.
        let _ = write!(text, "{statement}");
        let summary = Summary::of(&text.0);
        let mut span = self.traces.span(summary.name(), SpanKind::Client, &parent);
        span.set_attribute(KeyValue::new("db.system.name", "postgresql"));
        span.set_attribute(KeyValue::new("db.operation.name", summary.operation));
        if let Some(table) = summary.table {
            span.set_attribute(KeyValue::new("db.collection.name", table));
        }
        Some(span)
    }
}

impl Instrumentation for StatementSpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                let span = self.start(&query);
                self.open.push_back(span);
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                if let Some(Some(mut span)) = self.open.pop_front() {
                    if let Some(error) = error {
                        span.set_status(Status::error(error.to_string()));
                    }
                    span.end();
                }
            }
            _ => {}
        }
    }
}

/// A statement's text, without what diesel writes after it: formatting stops there.
struct SqlOnly(String);

impl Write for SqlOnly {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_str(s);
        match self.0.find(BINDS) {
            Some(end) => {
                self.0.truncate(end);
                Err(fmt::Error)
            }
            None if self.0.len() > MAX_TEXT => Err(fmt::Error),
            None => Ok(()),
        }
    }
}

/// What a span says of a statement: its operation (the first keyword, or INSERT for a CTE
/// statement that inserts) and the table it reads or writes first, as semantic conventions
/// name them.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    operation: String,
    table: Option<String>,
}

impl Summary {
    fn of(sql: &str) -> Self {
        let operation = words(sql).next().unwrap_or_default().to_ascii_uppercase();
        // A statement with CTEs that writes is named for its first write.
        let writes =
            operation == "WITH" && words(sql).any(|word| word.eq_ignore_ascii_case("INSERT"));
        let operation = if writes {
            "INSERT".to_owned()
        } else {
            operation
        };
        let keyword = match operation.as_str() {
            "SELECT" | "DELETE" => "FROM",
            "UPDATE" => "UPDATE",
            "INSERT" => "INTO",
            _ => {
                return Self {
                    operation,
                    table: None,
                }
            }
        };
        let table = table_after(sql, keyword);
        Self { operation, table }
    }

    fn name(&self) -> String {
        match &self.table {
            Some(table) => format!("{} {table}", self.operation),
            None => self.operation.clone(),
        }
    }
}

/// The words of `sql`: what whitespace, parentheses and commas separate.
fn words(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
        .filter(|word| !word.is_empty())
}

/// The table named after the first `keyword` of `sql` (a word of its own, any case), unquoted;
/// none when what follows is a function (`unnest(…)`) or a parameter.
fn table_after(sql: &str, keyword: &str) -> Option<String> {
    let mut words = words(sql);
    words.find(|word| word.eq_ignore_ascii_case(keyword))?;
    let name = words.next()?;
    let called = sql.contains(&format!("{name}("));
    let name = name.replace('"', "");
    (!called && !name.starts_with('$')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sql: &str) -> (String, Option<String>) {
        let Summary { operation, table } = Summary::of(sql);
        (operation, table)
    }

    #[test]
    fn a_statement_is_summarised_by_its_operation_and_first_table() {
        let cases = [
            (
                r#"SELECT "orders"."id" FROM "orders" WHERE "orders"."id" = $1"#,
                ("SELECT", Some("orders")),
            ),
            (
                r#"UPDATE "orders" SET "status" = $1 WHERE "orders"."id" = $2"#,
                ("UPDATE", Some("orders")),
            ),
            (
                "WITH new_orders AS MATERIALIZED (SELECT nextval('orders_id_seq') FROM \
                 unnest($1)), stored_orders AS (INSERT INTO orders (id) SELECT id FROM new_orders)",
                ("INSERT", Some("orders")),
            ),
            ("BEGIN", ("BEGIN", None)),
            ("COMMIT", ("COMMIT", None)),
            ("SELECT 1", ("SELECT", None)),
            (
                "INSERT INTO order_events (order_id, type, from_status) VALUES ($1, $2, $3)",
                ("INSERT", Some("order_events")),
            ),
            ("SELECT pg_notify($1, '') FROM unnest($2)", ("SELECT", None)),
        ];
        for (sql, (operation, table)) in cases {
            assert_eq!(
                summary(sql),
                (operation.to_owned(), table.map(str::to_owned)),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_text_stops_where_the_binds_begin() {
        struct Statement;
        impl fmt::Display for Statement {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "SELECT $1{BINDS}")?;
                panic!("the binds are never formatted")
            }
        }
        let mut text = SqlOnly(String::new());
        assert!(write!(text, "{Statement}").is_err());
        assert_eq!(text.0, "SELECT $1");
    }
}
