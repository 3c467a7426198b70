//! PostgreSQL's plan for a list page's query, for the test that every list filter is served by
//! an index. Compiled only with the `explain` feature (Cargo.toml says why): the service never
//! runs it.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::page_query;
use crate::db::StoreError;
use crate::domain::PageRequest;

/// The plan of the very query `orders_page` runs for `page`, one line per plan node, as
/// `EXPLAIN` shows it.
pub async fn explain_orders_page(
    conn: &mut AsyncPgConnection,
    page: &PageRequest,
) -> Result<Vec<String>, StoreError> {
    Ok(Explain(page_query(page)).load(conn).await?)
}

/// `EXPLAIN <query>`, with the query's bind parameters.
#[derive(QueryId)]
struct Explain<Q>(Q);

impl<Q> Query for Explain<Q> {
    type SqlType = Text;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("EXPLAIN ");
        self.0.walk_ast(out.reborrow())
    }
}
