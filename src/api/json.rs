//! How request bodies are read, so that every missing or mistyped field is reported at once.

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::domain::Given;

/// A field of a request body, read without failing the whole body. serde stops at the first
/// missing or mistyped field; reading each field through this type instead lets the domain
/// report every problem in one answer. `null` counts as missing.
#[derive(Default)]
pub enum Field<T> {
    #[default]
    Missing,
    WrongType,
    Given(T),
}

/// What a field's JSON must be, in words for the client ("a string").
pub trait JsonKind {
    const KIND: &'static str;
}

impl JsonKind for String {
    const KIND: &'static str = "a string";
}

impl JsonKind for serde_json::Number {
    const KIND: &'static str = "a number";
}

impl<T> JsonKind for Vec<T> {
    const KIND: &'static str = "an array";
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The field's JSON text, checked to be JSON and borrowed from the body, then read as a
        // `T`. (Not through a `serde_json::Value`: that builds a tree of the whole value and
        // takes every number through a float and back to text, a third of the cost of reading
        // a create's body.) Only bytes that are not JSON fail the body; a value of the wrong
        // type is kept as `WrongType` for the domain to report.
        let raw = <&RawValue>::deserialize(deserializer)?;
        if raw.get() == "null" {
            return Ok(Self::Missing);
        }
        match serde_json::from_str(raw.get()) {
            Ok(value) => Ok(Self::Given(value)),
            Err(e) if e.is_data() => Ok(Self::WrongType),
            // Checking the text as JSON leaves escapes undecoded, so a bad one (a lone
            // surrogate) shows only now. The body is not JSON: `is_not_json` tells.
            Err(e) => Err(de::Error::custom(format_args!("{NOT_JSON}{e}"))),
        }
    }
}

/// How a field's error says that the body is not JSON after all.
const NOT_JSON: &str = "in a field's value: ";

/// Whether reading a body failed because it is not JSON, rather than because a well-formed
/// value has the wrong shape.
pub fn is_not_json(error: &serde_json::Error) -> bool {
    !error.is_data() || error.to_string().starts_with(NOT_JSON)
}

impl<T: JsonKind> Field<T> {
    /// The value, or what the client must fix: "is required", "must be a string" …
    pub fn given(&self) -> Given<&T> {
        match self {
            Self::Given(value) => Ok(value),
            Self::Missing => Err("is required".into()),
            Self::WrongType => Err(format!("must be {}", T::KIND)),
        }
    }
}

/// An integer that also takes integral numbers written with a zero fraction (`2.0`).
pub struct Integer(pub i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        integer(deserializer).map(Self)
    }
}

impl JsonKind for Integer {
    const KIND: &'static str = "an integer";
}

/// An integer field that also takes integral numbers written with a zero fraction (`2.0`), as
/// JSON Schema's `integer` does. Exponents are refused rather than expanded, so `1e999999999`
/// costs nothing; anything beyond `i64` is refused like any other non-integer.
fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let text = number.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    whole
        .parse::<i64>()
        .ok()
        .filter(|_| fraction.bytes().all(|b| b == b'0'))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("expected an integer within ±2^63, got {text}"))
        })
}

#[cfg(test)]
mod tests {
    use super::{Field, Integer};

    #[test]
    fn a_field_is_given_missing_or_of_the_wrong_type() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            name: Field<String>,
            #[serde(default)]
            n: Field<Integer>,
        }
        let read = |json: &str| {
            let body: Body = serde_json::from_str(json).unwrap();
            (body.name.given().cloned(), body.n.given().map(|n| n.0))
        };
        assert_eq!(read(r#"{"name":"a","n":2}"#), (Ok("a".into()), Ok(2)));
        assert_eq!(
            read(r#"{"name":null}"#),
            (Err("is required".into()), Err("is required".into()))
        );
        assert_eq!(
            read(r#"{"name":5,"n":"2"}"#),
            (
                Err("must be a string".into()),
                Err("must be an integer".into())
            )
        );
        assert!(
            serde_json::from_str::<Body>(r#"{"name":"#).is_err(),
            "bytes that are not JSON still fail"
        );
    }

    #[test]
    fn integers_may_carry_a_zero_fraction_but_nothing_else() {
        #[derive(serde::Deserialize)]
        struct Field {
            n: super::Integer,
        }
        let cases: &[(&str, Option<i64>)] = &[
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("7.0", Some(7)),
            ("7.000", Some(7)),
            ("-0", Some(0)),
            ("9223372036854775807", Some(i64::MAX)),
            ("9223372036854775808", None),
            ("99999999999999999999", None),
            ("7.5", None),
            ("1e3", None),
            ("1e309", None),
            ("\"7\"", None),
            ("null", None),
        ];
        for (json, expected) in cases {
            let got = serde_json::from_str::<Field>(&format!(r#"{{"n": {json}}}"#)).ok();
            assert_eq!(got.map(|f| f.n.0), *expected, "{json}");
        }
    }
}
