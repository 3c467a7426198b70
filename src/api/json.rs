//! How domain values look in JSON.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::Money;

/// Money is a JSON number with exactly two decimals (`999.99`, `75.00`). serde_json's
/// `arbitrary_precision` writes the decimal text as is, so no float ever touches the value.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::Number::from_str(&self.to_string())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// The OpenAPI side of the `Serialize` above. No `multipleOf: 0.01`: validators test it in
/// floating point, where `0.07` is not a multiple of `0.01`.
impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .description(Some(
                "An exact amount of money: a JSON number written with exactly two decimals.",
            ))
            .examples([serde_json::json!(999.99)])
            .into()
    }
}

impl ToSchema for Money {}

/// An integer field that also takes integral numbers written with a zero fraction (`2.0`), as
/// JSON Schema's `integer` does. Exponents are refused rather than expanded, so `1e999999999`
/// costs nothing; anything beyond `i64` is refused like any other non-integer.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
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
    use crate::domain::Money;

    #[test]
    fn money_is_a_json_number_with_two_decimals() {
        for (price, json) in [
            ("999.99", "999.99"),
            ("75", "75.00"),
            ("0.1", "0.10"),
            ("0", "0.00"),
        ] {
            let money = Money::parse_unit_price(price).unwrap();
            assert_eq!(
                serde_json::to_string(&money).unwrap(),
                json,
                "price {price}"
            );
        }
    }

    #[test]
    fn integers_may_carry_a_zero_fraction_but_nothing_else() {
        #[derive(serde::Deserialize)]
        struct Field {
            #[serde(deserialize_with = "super::integer")]
            n: i64,
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
            assert_eq!(got.map(|f| f.n), *expected, "{json}");
        }
    }
}
