//! How domain values look in JSON.

use std::str::FromStr;

use serde::{Serialize, Serializer};

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
}
