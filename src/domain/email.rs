const MAX_CHARS: usize = 255;

/// A plausible e-mail address: `local@domain.tld`, no whitespace, at most 255 characters.
/// Deliverability is not our business; catching typos like a missing `@` or domain is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim();
        if email.is_empty() {
            return Err("must not be empty".into());
        }
        if email.chars().count() > MAX_CHARS {
            return Err(format!("must be at most {MAX_CHARS} characters"));
        }
        let plausible = email.split_once('@').is_some_and(|(local, domain)| {
            let labels_ok = domain.split('.').all(|label| !label.is_empty());
            !local.is_empty() && domain.contains('.') && labels_ok && !domain.contains('@')
        });
        if !plausible || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must be a valid e-mail address like name@example.com".into());
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_plausible_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(243));
        let too_long = format!("{}@example.com", "a".repeat(244));
        let cases: &[(&str, bool)] = &[
            ("john@example.com", true),
            (" john@example.com ", true),
            ("first.last+tag@sub.example.co.uk", true),
            (&long_local, true),
            (&too_long, false),
            ("", false),
            ("john", false),
            ("john@", false),
            ("@example.com", false),
            ("john@example", false),
            ("john@example.", false),
            ("john@.com", false),
            ("john@@example.com", false),
            ("jo hn@example.com", false),
            ("john@exa\0mple.com", false),
        ];
        for (raw, ok) in cases {
            assert_eq!(Email::parse(raw).is_ok(), *ok, "email {raw:?}");
        }
    }
}
