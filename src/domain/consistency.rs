use std::fmt;

/// A point in the database's history: where a write committed, or the state a list page was
/// read in. Clients hold it as the opaque `Consistency-Token` header and send it back, so that
/// a read is served at that point or later: never older than their own writes, never older
/// than the page before.
///
/// Inside it is a write-ahead-log position in bytes, shown as PostgreSQL shows one (`16/B374D848`)
/// so that an operator can set it beside `pg_stat_replication`; clients must not rely on that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsistencyToken(u64);

impl ConsistencyToken {
    pub fn from_wal_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    pub fn wal_bytes(self) -> u64 {
        self.0
    }

    /// Reads a token this API handed out: two hexadecimal numbers of at most 32 bits each,
    /// separated by `/`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let half = |part: &str| {
            (!part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        text.split_once('/')
            .and_then(|(high, low)| Some(Self(half(high)? << 32 | half(low)?)))
            .ok_or_else(|| format!("Consistency-Token {text:?} is not a token this API handed out"))
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_as_the_position_it_shows() {
        for bytes in [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, 0x16_B374_D848, u64::MAX] {
            let token = ConsistencyToken::from_wal_bytes(bytes);
            assert_eq!(
                ConsistencyToken::parse(&token.to_string()),
                Ok(token),
                "{token}"
            );
        }
        assert_eq!(
            ConsistencyToken::from_wal_bytes(0x16_B374_D848).to_string(),
            "16/B374D848"
        );
        assert_eq!(
            ConsistencyToken::parse("0/3a0000f8").map(ConsistencyToken::wal_bytes),
            Ok(0x3A00_00F8),
            "either case"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "/",
            "0/",
            "/0",
            "12",
            "0/0/0",
            "g/0",
            "0/-1",
            "+1/0",
            "100000000/0",
            " 0/0",
        ] {
            assert!(ConsistencyToken::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn later_positions_compare_greater() {
        let earlier = ConsistencyToken::parse("0/FFFFFFFF").unwrap();
        let later = ConsistencyToken::parse("1/0").unwrap();
        assert!(later > earlier);
    }
}
