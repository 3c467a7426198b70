//! The documentation held to the code: the tables a reader relies on name exactly what the
//! code has. Each reads the Markdown as a reader sees it, so a table that drifts fails here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::helpers::spawn_app;

/// A file of the repository, as text.
fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The lines under `heading` (a whole line, such as `## Errors`) up to the next heading of the
/// same or a higher level; lines of code blocks are never headings.
fn section<'a>(markdown: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.len() - heading.trim_start_matches('#').len();
    let mut lines = markdown
        .lines()
        .skip_while(|line| line.trim_end() != heading);
    assert!(lines.next().is_some(), "no `{heading}` heading");
    let mut in_code = false;
    lines
        .take_while(|line| {
            in_code ^= line.starts_with("```");
            let hashes = line.len() - line.trim_start_matches('#').len();
            in_code || !(1..=level).contains(&hashes) || !line[hashes..].starts_with(' ')
        })
        .collect()
}

/// Each table row's cells, without the outer pipes.
fn rows<'a>(lines: &[&'a str]) -> Vec<Vec<&'a str>> {
    lines
        .iter()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .map(|row| row.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

/// The backquoted words of a cell.
fn quoted(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

#[actix_web::test]
async fn the_api_guides_error_table_lists_every_error_code() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let in_document: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the ErrorCode schema lists the codes")
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();

    let guide = read("docs/API.md");
    let table = rows(&section(&guide, "## Errors"));
    // The second column of each row: `code`, `code` …
    let in_guide: BTreeSet<&str> = table.iter().flat_map(|row| quoted(row[1])).collect();

    assert_eq!(
        in_guide, in_document,
        "docs/API.md's error table and the OpenAPI document list the same codes"
    );
}

/// The environment variables a source file names, its unit tests left out: string literals
/// that are a whole name in capitals (`"DB_POOL_TIMEOUT"`). Each maps to the default written
/// right after it, when that is a literal (`"DB_POOL_TIMEOUT", "3s"`, `"PORT", 8080`, or
/// clap's `default_value = "3s"`) and not the reason of an error about it.
fn variables_named_in(source: &str) -> BTreeMap<String, Option<String>> {
    let code = source.split("#[cfg(test)]").next().unwrap();
    let mut names = BTreeMap::new();
    for (literal, after) in string_literals(code) {
        let is_name = literal.len() >= 3
            && literal.starts_with(|c: char| c.is_ascii_uppercase())
            && literal
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !is_name {
            continue;
        }
        // `env.invalid("WEBHOOK_URLS", "why")` names a variable to blame, not its default.
        let before = &code[..code.len() - after.len() - literal.len() - 2];
        let default = (!before.trim_end().ends_with("invalid(")).then(|| default_after(after));
        let default = default.flatten();
        let entry = names.entry(literal.to_owned()).or_insert(None);
        if default.is_some() {
            *entry = default;
        }
    }
    names
}

/// Each string literal of Rust code (as written, escapes left in) with the code after it.
/// Comments and the character literal `'"'` are passed over.
fn string_literals(code: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find(['"', '/', '\'']) {
        let tail = &rest[start..];
        rest = if tail.starts_with("//") {
            tail.split_once('\n').map_or("", |(_, next)| next)
        } else if let Some(after) = tail.strip_prefix("'\"'") {
            after
        } else if let Some(body) = tail.strip_prefix('"') {
            let mut escaped = false;
            let end = body
                .find(|c| {
                    let closes = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .unwrap_or(body.len());
            found.push((&body[..end], body.get(end + 1..).unwrap_or("")));
            body.get(end + 1..).unwrap_or("")
        } else {
            &tail[1..]
        };
    }
    found
}

/// The literal that follows a variable's name as its default, if any: `, "3s"` or `, 8080`.
fn default_after(text: &str) -> Option<String> {
    let text = text.strip_prefix(',')?.trim_start();
    let text = ["default_value_t =", "default_value ="]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .map_or(text, str::trim_start);
    if let Some(quoted) = text.strip_prefix('"') {
        return quoted.split_once('"').map(|(value, _)| value.to_owned());
    }
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let ends_there = text[digits.len()..].starts_with([',', ')']);
    (!digits.is_empty() && ends_there).then_some(digits)
}

#[test]
fn the_readmes_configuration_table_lists_every_variable_with_its_default() {
    let read_by_config = variables_named_in(&read("src/config.rs"));
    assert!(
        read_by_config.len() >= 20,
        "found only {read_by_config:?} in src/config.rs: if it no longer names its variables \
         in string literals, teach this test where to find them"
    );
    let readme = read("README.md");
    // variable → the first backquoted word of its default column, if any.
    let table: BTreeMap<&str, Option<&str>> = rows(&section(&readme, "## Configuration"))
        .into_iter()
        .filter_map(|row| Some((quoted(row[0]).next()?, quoted(row[1]).next())))
        .collect();

    let missing: Vec<_> = read_by_config
        .keys()
        .filter(|name| !table.contains_key(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "src/config.rs reads {missing:?}, which the README's configuration table does not list"
    );
    // RUST_LOG is read by env_logger (src/main.rs), not by the configuration.
    assert!(
        table.contains_key("RUST_LOG") && read("src/main.rs").contains("env_logger"),
        "the README's configuration table lists RUST_LOG, which env_logger reads"
    );
    let unread: Vec<_> = table
        .keys()
        .filter(|name| !read_by_config.contains_key(**name) && **name != "RUST_LOG")
        .collect();
    assert!(
        unread.is_empty(),
        "the README's configuration table lists {unread:?}, which nothing reads"
    );

    for (name, default) in &read_by_config {
        let Some(default) = default else { continue };
        // An empty default is no value: the table shows none either.
        let expected = Some(default.as_str()).filter(|d| !d.is_empty());
        assert_eq!(
            table[name.as_str()],
            expected,
            "the README's default of {name} is the one src/config.rs gives it"
        );
    }
}
