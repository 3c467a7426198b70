//! The order every create request sends, numbered so that each can be recognised when it is
//! read back, and the check that a stored order is exactly that one.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use serde_json::{json, Number, Value};

struct Line {
    product: &'static str,
    quantity: i64,
    unit_price: &'static str,
    total_price: &'static str,
}

/// The seed's stress order. Money is kept as decimal text: never through a float.
const LINES: [Line; 2] = [
    Line {
        product: "Widget",
        quantity: 1,
        unit_price: "99.99",
        total_price: "99.99",
    },
    Line {
        product: "Gadget",
        quantity: 2,
        unit_price: "49.99",
        total_price: "99.98",
    },
];
const TOTAL: &str = "199.97";

fn customer_name(n: u64) -> String {
    format!("StressTest Customer {n}")
}

fn customer_email(n: u64) -> String {
    format!("stress{n}@example.com")
}

/// A decimal constant as a JSON number with exactly its digits (serde_json keeps them, as it
/// is built with `arbitrary_precision`).
fn number(decimal: &str) -> Number {
    Number::from_str(decimal).expect("the order's prices are valid JSON numbers")
}

pub fn body(n: u64) -> Value {
    let items: Vec<Value> = LINES
        .iter()
        .map(|line| {
            json!({
                "product_name": line.product,
                "quantity": line.quantity,
                "unit_price": number(line.unit_price),
            })
        })
        .collect();
    json!({
        "customer_name": customer_name(n),
        "customer_email": customer_email(n),
        "items": items,
    })
}

/// Checks that `order` is order number `n` as sent, with the totals the server must compute.
pub fn check(n: u64, order: &Value) -> Result<(), String> {
    let id = &order["id"];
    let mut wrong = Vec::new();
    if order["customer_name"] != customer_name(n).as_str() {
        wrong.push(format!("customer_name {}", order["customer_name"]));
    }
    if order["customer_email"] != customer_email(n).as_str() {
        wrong.push(format!("customer_email {}", order["customer_email"]));
    }
    if !same_money(&order["total_amount"], TOTAL) {
        wrong.push(format!("total_amount {}", order["total_amount"]));
    }
    let items = order["items"].as_array().map_or(&[][..], Vec::as_slice);
    if items.len() != LINES.len() || !LINES.iter().all(|line| items.iter().any(|i| line.is(i))) {
        wrong.push(format!("items {}", order["items"]));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("order {id} (sent as {n}): {}", wrong.join(", ")))
    }
}

impl Line {
    fn is(&self, item: &Value) -> bool {
        item["product_name"] == self.product
            && item["quantity"] == self.quantity
            && same_money(&item["unit_price"], self.unit_price)
            && same_money(&item["total_price"], self.total_price)
    }
}

/// Compares as decimals, so `199.970` equals `199.97` and no float rounding can hide a cent.
fn same_money(value: &Value, expected: &str) -> bool {
    let parse = |text: &str| BigDecimal::from_str(text).ok();
    let got = value.as_number().and_then(|n| parse(&n.to_string()));
    got.is_some() && got == parse(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u64) -> Value {
        let mut order = body(n);
        order["id"] = json!(7);
        order["total_amount"] = json!(number("199.97"));
        order["items"] = json!([
            {"product_name": "Gadget", "quantity": 2, "unit_price": number("49.99"), "total_price": number("99.98")},
            {"product_name": "Widget", "quantity": 1, "unit_price": number("99.990"), "total_price": number("99.99")},
        ]);
        order
    }

    #[test]
    fn the_order_as_sent_passes_in_any_item_order() {
        assert_eq!(check(3, &stored(3)), Ok(()));
    }

    #[test]
    fn the_body_carries_prices_as_written() {
        let text = body(5).to_string();
        assert!(text.contains(r#""unit_price":99.99"#), "{text}");
        assert!(
            text.contains(r#""customer_name":"StressTest Customer 5""#),
            "{text}"
        );
    }

    #[test]
    fn any_difference_is_reported() {
        let cases: [(&str, Value); 4] = [
            ("customer_name", json!("StressTest Customer 4")),
            ("customer_email", json!("other@example.com")),
            ("total_amount", json!(number("199.96"))),
            ("items", json!([])),
        ];
        for (field, value) in cases {
            let mut order = stored(3);
            order[field] = value;
            let err = check(3, &order).expect_err(field);
            assert!(err.contains(field), "{field}: {err}");
        }
        let mut order = stored(3);
        order["items"][0]["total_price"] = json!(number("99.97"));
        assert!(check(3, &order).is_err(), "a wrong line total is caught");
    }
}
