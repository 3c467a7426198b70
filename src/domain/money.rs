use std::fmt;
use std::iter::Sum;
use std::str::FromStr;

use bigdecimal::num_traits::ToPrimitive;
use bigdecimal::BigDecimal;
use serde::{Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Cents are the smallest unit: every amount carries exactly two decimals.
const SCALE: i64 = 2;
/// Exponents outside this range cannot be a valid price; refusing them before any arithmetic
/// keeps inputs like `1e-999999999` from allocating huge numbers.
const MAX_ABS_EXPONENT: i64 = 20;

/// An exact amount of money with two decimals. Never a float.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(BigDecimal);

impl Money {
    /// Largest unit price: fits the `NUMERIC(12, 2)` column.
    pub fn max_unit_price() -> Self {
        Self(BigDecimal::new(999_999_999_999i64.into(), SCALE))
    }

    /// Largest line or order total: fits the `NUMERIC(14, 2)` columns.
    pub fn max_total() -> Self {
        Self(BigDecimal::new(99_999_999_999_999i64.into(), SCALE))
    }

    pub fn zero() -> Self {
        Self(BigDecimal::new(0.into(), SCALE))
    }

    /// Parses a unit price from its decimal text (a JSON number as written by the client):
    /// at least 0, at most two decimals, at most 9,999,999,999.99.
    pub fn parse_unit_price(text: &str) -> Result<Self, String> {
        let value =
            BigDecimal::from_str(text).map_err(|_| format!("{text:?} is not a decimal number"))?;
        let (_, exponent) = value.as_bigint_and_exponent();
        if exponent.abs() > MAX_ABS_EXPONENT {
            return Err(format!("must be between 0 and {}", Self::max_unit_price()));
        }
        if value.sign() == bigdecimal::num_bigint::Sign::Minus {
            return Err("must not be negative".into());
        }
        if value.normalized().fractional_digit_count() > SCALE {
            return Err("must have at most 2 decimal places".into());
        }
        let price = Self(value.with_scale(SCALE));
        if price > Self::max_unit_price() {
            return Err(format!("must be at most {}", Self::max_unit_price()));
        }
        Ok(price)
    }

    /// Wraps an amount read back from a `NUMERIC(_, 2)` column.
    pub fn from_stored(value: BigDecimal) -> Self {
        Self(value.with_scale(SCALE))
    }

    /// `self × quantity`, exact.
    pub fn times(&self, quantity: u32) -> Self {
        Self(&self.0 * BigDecimal::from(quantity))
    }

    pub fn as_decimal(&self) -> &BigDecimal {
        &self.0
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::zero(), |acc, m| Self(acc.0 + m.0))
    }
}

/// Always two decimals: `999.99`, `75.00`, `0.30`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every amount is held in cents (scale 2) and fits an i64: written as integers, which
        // costs a fraction of BigDecimal's general formatting (a list page writes dozens).
        let (digits, scale) = self.0.as_bigint_and_scale();
        match digits.to_i64().filter(|_| scale == SCALE) {
            Some(cents) => {
                let sign = if cents < 0 { "-" } else { "" };
                let cents = cents.unsigned_abs();
                write!(f, "{sign}{}.{:02}", cents / 100, cents % 100)
            }
            None => write!(f, "{:.2}", self.0),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> Money {
        Money::parse_unit_price(text).unwrap()
    }

    #[test]
    fn unit_price_rules() {
        let cases: &[(&str, Option<&str>)] = &[
            ("999.99", Some("999.99")),
            ("0", Some("0.00")),
            ("0.00", Some("0.00")),
            ("-0", Some("0.00")),
            ("75", Some("75.00")),
            ("1.5", Some("1.50")),
            ("1.500", Some("1.50")),
            ("1e2", Some("100.00")),
            ("9999999999.99", Some("9999999999.99")),
            ("10000000000.00", None),
            ("9999999999.999", None),
            ("0.001", None),
            ("-0.01", None),
            ("1e309", None),
            ("1e-999999999", None),
            ("NaN", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let got = Money::parse_unit_price(text).ok().map(|m| m.to_string());
            assert_eq!(got.as_deref(), *expected, "unit price {text:?}");
        }
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(price("0.10").times(3).to_string(), "0.30");
        assert_eq!(price("49.99").times(2).to_string(), "99.98");
        let total: Money = [price("0.10"), price("0.20")].into_iter().sum();
        assert_eq!(total.to_string(), "0.30");
        assert_eq!(
            Vec::<Money>::new().into_iter().sum::<Money>().to_string(),
            "0.00"
        );
        assert_eq!(
            Money::max_unit_price().times(1_000_000).to_string(),
            "9999999999990000.00",
            "largest possible line total is computed exactly"
        );
        assert!(Money::max_unit_price().times(1_000_000) > Money::max_total());
    }

    #[test]
    fn every_amount_is_written_as_bigdecimal_writes_it_at_two_decimals() {
        let beyond_i64 = BigDecimal::new(
            BigDecimal::from(i64::MAX).as_bigint_and_scale().0.as_ref() * 1000,
            2,
        );
        for stored in ["12.3", "-5.05", "-0.05", "0", "99999999999999.99", "7"]
            .map(|text| BigDecimal::from_str(text).unwrap())
            .into_iter()
            .chain([beyond_i64])
        {
            let money = Money::from_stored(stored.clone());
            assert_eq!(money.to_string(), format!("{stored:.2}"), "{stored}");
        }
    }

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
}
