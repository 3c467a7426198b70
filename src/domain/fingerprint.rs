use sha2::{Digest, Sha256};

/// SHA-256 over a sequence of text fields. Each field is length-prefixed, so ("ab", "c") and
/// ("a", "bc") hash differently.
#[derive(Default)]
pub(crate) struct Fingerprint(Sha256);

impl Fingerprint {
    pub(crate) fn field(&mut self, text: &str) -> &mut Self {
        self.0.update((text.len() as u64).to_be_bytes());
        self.0.update(text.as_bytes());
        self
    }

    /// The digest as lowercase hex (64 characters).
    pub(crate) fn hex(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(fields: &[&str]) -> String {
        let mut fingerprint = Fingerprint::default();
        for field in fields {
            fingerprint.field(field);
        }
        fingerprint.hex()
    }

    #[test]
    fn field_boundaries_count() {
        assert_eq!(of(&["ab", "c"]), of(&["ab", "c"]));
        assert_ne!(of(&["ab", "c"]), of(&["a", "bc"]));
        assert_ne!(of(&["abc"]), of(&["abc", ""]));
        assert_eq!(of(&[]).len(), 64);
    }
}
