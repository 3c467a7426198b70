const MAX_CHARS: usize = 255;

/// Trims surrounding whitespace and enforces 1..=255 characters. The content is otherwise kept
/// verbatim (quotes, SQL, emoji, right-to-left text), except NUL, which PostgreSQL text cannot hold.
fn bounded_text(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    match trimmed.chars().count() {
        0 => Err("must not be empty".into()),
        n if n > MAX_CHARS => Err(format!("must be at most {MAX_CHARS} characters (got {n})")),
        _ => Ok(trimmed.to_owned()),
    }
}

/// 1 to `max_len` visible ASCII characters (`!` to `~`): what fits a header value as is.
pub(crate) fn is_visible_ascii(raw: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic())
}

/// A customer's name: 1..=255 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerName(String);

impl CustomerName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded_text(raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's name on an order line: 1..=255 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded_text(raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        let cases: &[(&str, Option<&str>)] = &[
            ("John Doe", Some("John Doe")),
            ("  padded\t", Some("padded")),
            ("", None),
            ("   ", None),
            ("a", Some("a")),
            (&"x".repeat(255), Some(&"x".repeat(255))),
            (&"x".repeat(256), None),
            (&"é".repeat(255), Some(&"é".repeat(255))),
            (
                "Robert'); DROP TABLE orders;--",
                Some("Robert'); DROP TABLE orders;--"),
            ),
            ("🛒 مرحبا", Some("🛒 مرحبا")),
            ("nul\0inside", None),
        ];
        for (raw, expected) in cases {
            let got = CustomerName::parse(raw).ok();
            assert_eq!(
                got.as_ref().map(CustomerName::as_str),
                *expected,
                "customer name {raw:?}"
            );
            let got = ProductName::parse(raw).ok();
            assert_eq!(
                got.as_ref().map(ProductName::as_str),
                *expected,
                "product name {raw:?}"
            );
        }
    }
}
