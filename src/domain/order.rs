use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::validation::Collector;
use super::{CustomerName, Email, Money, OrderStatus, ProductName, ValidationErrors};

pub const MAX_ITEMS: usize = 100;
const MAX_QUANTITY: i64 = 1_000_000;

/// The id of a stored order: a positive 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(example = 42)]
pub struct OrderId(i64);

impl OrderId {
    pub fn parse(text: &str) -> Result<Self, String> {
        positive_id(text, "order").map(Self)
    }

    /// Wraps an id the database assigned.
    pub fn from_stored(id: i64) -> Self {
        Self(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A field as the request carried it: its value, or why there is none to check (missing, or
/// not of the expected JSON type), in words for the client. Such a field is reported with the
/// rule violations of the others, so one answer names every problem.
pub type Given<T> = Result<T, String>;

/// A stored row's id as a client writes it in a path: a positive 64-bit integer.
pub(super) fn positive_id(text: &str, what: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{what} id must be a positive 64-bit integer, got {text:?}"
        )),
    }
}

/// One order line as the client sent it, before validation.
pub struct ItemInput<'a> {
    pub product_name: Given<&'a str>,
    pub quantity: Given<i64>,
    /// The price exactly as written in the request (e.g. the JSON number's text).
    pub unit_price: Given<&'a str>,
}

/// A validated order line with its exact total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub product_name: ProductName,
    pub quantity: u32,
    pub unit_price: Money,
    pub total_price: Money,
}

/// A validated order, ready to store: every field is within its bounds and the totals fit
/// the database columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_name: CustomerName,
    pub customer_email: Email,
    pub items: Vec<NewItem>,
    pub total_amount: Money,
}

impl NewOrder {
    /// Parses a create request, reporting every invalid field at once. `items` is the list of
    /// lines, each of which may itself be unreadable (not an object).
    pub fn parse<'a, I>(
        customer_name: Given<&str>,
        customer_email: Given<&str>,
        items: Given<I>,
    ) -> Result<Self, ValidationErrors>
    where
        I: ExactSizeIterator<Item = Given<ItemInput<'a>>>,
    {
        let mut errors = Collector::default();
        let name = errors.check(
            || "customer_name".into(),
            customer_name.and_then(CustomerName::parse),
        );
        let email = errors.check(
            || "customer_email".into(),
            customer_email.and_then(Email::parse),
        );
        let items = errors.check(|| "items".into(), items);
        let count = items.as_ref().map_or(0, ExactSizeIterator::len);
        let count_ok = errors.check(
            || "items".into(),
            match count {
                _ if items.is_none() => Ok(()),
                0 => Err("must contain at least one item".into()),
                n if n > MAX_ITEMS => {
                    Err(format!("must contain at most {MAX_ITEMS} items (got {n})"))
                }
                _ => Ok(()),
            },
        );
        // Lines beyond the limit are not inspected: the count error already rejects the order.
        let parsed: Option<Vec<Option<NewItem>>> = items.map(|items| {
            items
                .take(MAX_ITEMS)
                .enumerate()
                .map(|(i, item)| {
                    let item = errors.check(|| format!("items[{i}]"), item)?;
                    parse_item(&mut errors, i, item)
                })
                .collect()
        });
        let order = (|| {
            let items: Vec<NewItem> = parsed?.into_iter().collect::<Option<_>>()?;
            let total_amount: Money = items.iter().map(|i| i.total_price.clone()).sum();
            let total_ok = errors.check(
                || "items".into(),
                if total_amount > Money::max_total() {
                    Err(format!(
                        "order total must be at most {}",
                        Money::max_total()
                    ))
                } else {
                    Ok(())
                },
            );
            total_ok?;
            count_ok?;
            Some(NewOrder {
                customer_name: name?,
                customer_email: email?,
                items,
                total_amount,
            })
        })();
        errors.finish(order)
    }
}

fn parse_item(errors: &mut Collector, index: usize, item: ItemInput<'_>) -> Option<NewItem> {
    let field = |name: &str| format!("items[{index}].{name}");
    let product_name = errors.check(
        || field("product_name"),
        item.product_name.and_then(ProductName::parse),
    );
    let quantity = errors.check(
        || field("quantity"),
        item.quantity
            .and_then(|quantity| match u32::try_from(quantity) {
                Ok(q) if (1..=MAX_QUANTITY).contains(&quantity) => Ok(q),
                _ => Err(format!(
                    "must be between 1 and {MAX_QUANTITY} (got {quantity})"
                )),
            }),
    );
    let unit_price = errors.check(
        || field("unit_price"),
        item.unit_price.and_then(Money::parse_unit_price),
    );
    let (product_name, quantity, unit_price) = (product_name?, quantity?, unit_price?);
    Some(NewItem {
        total_price: unit_price.times(quantity),
        product_name,
        quantity,
        unit_price,
    })
}

/// A stored order line, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderItem {
    pub id: i64,
    pub order_id: OrderId,
    pub product_name: String,
    pub quantity: i32,
    pub unit_price: Money,
    pub total_price: Money,
}

/// A stored order with its lines, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub customer_name: String,
    pub customer_email: String,
    pub status: OrderStatus,
    pub total_amount: Money,
    pub items: Vec<OrderItem>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item<'a>(name: &'a str, quantity: i64, price: &'a str) -> Given<ItemInput<'a>> {
        Ok(ItemInput {
            product_name: Ok(name),
            quantity: Ok(quantity),
            unit_price: Ok(price),
        })
    }

    fn parse<'a>(
        name: &str,
        email: &str,
        items: impl IntoIterator<Item = Given<ItemInput<'a>>>,
    ) -> Result<NewOrder, ValidationErrors> {
        let items: Vec<_> = items.into_iter().collect();
        NewOrder::parse(Ok(name), Ok(email), Ok(items.into_iter()))
    }

    fn fields(result: Result<NewOrder, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("expected validation errors")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn valid_order_gets_exact_totals() {
        let order = parse(
            " John Doe ",
            "john@example.com",
            [item("Laptop", 1, "999.99"), item("Pen", 3, "0.10")],
        )
        .unwrap();
        assert_eq!(order.customer_name.as_str(), "John Doe");
        assert_eq!(order.items[1].total_price.to_string(), "0.30");
        assert_eq!(order.total_amount.to_string(), "1000.29");
    }

    #[test]
    fn reports_every_bad_field_at_once() {
        let got = fields(parse(
            "",
            "not-an-email",
            [item("", 0, "-1"), item("ok", 1, "1.234")],
        ));
        assert_eq!(
            got,
            [
                "customer_name",
                "customer_email",
                "items[0].product_name",
                "items[0].quantity",
                "items[0].unit_price",
                "items[1].unit_price"
            ]
        );
    }

    #[test]
    fn fields_that_could_not_be_read_are_reported_with_the_broken_rules() {
        let unreadable = Ok(ItemInput {
            product_name: Ok("ok"),
            quantity: Err("must be an integer".into()),
            unit_price: Err("is required".into()),
        });
        let errors = NewOrder::parse(
            Ok(""),
            Err("is required".into()),
            Ok(vec![
                unreadable,
                Err("must be an object".into()),
                item("x", 0, "1"),
            ]
            .into_iter()),
        )
        .expect_err("invalid");
        let got: Vec<(&str, &str)> = errors
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("customer_name", "must not be empty"),
                ("customer_email", "is required"),
                ("items[0].quantity", "must be an integer"),
                ("items[0].unit_price", "is required"),
                ("items[1]", "must be an object"),
                ("items[2].quantity", "must be between 1 and 1000000 (got 0)"),
            ]
        );
        let no_items = NewOrder::parse::<std::vec::IntoIter<_>>(
            Ok("a"),
            Ok("a@b.co"),
            Err("is required".into()),
        );
        assert_eq!(fields(no_items), ["items"]);
    }

    #[test]
    fn quantity_bounds() {
        for (quantity, ok) in [
            (0, false),
            (1, true),
            (1_000_000, true),
            (1_000_001, false),
            (-1, false),
            (i64::MAX, false),
        ] {
            let result = parse("a", "a@b.co", [item("x", quantity, "1")]);
            assert_eq!(result.is_ok(), ok, "quantity {quantity}");
        }
    }

    #[test]
    fn item_count_bounds() {
        for (count, ok) in [(0, false), (1, true), (100, true), (101, false)] {
            let items: Vec<_> = (0..count).map(|_| item("x", 1, "1")).collect();
            let result = parse("a", "a@b.co", items);
            assert_eq!(result.is_ok(), ok, "{count} items");
        }
    }

    #[test]
    fn total_must_fit_the_column() {
        let max = Money::max_unit_price().to_string();
        let fits = parse("a", "a@b.co", [item("x", 100, &max)]);
        assert_eq!(fits.unwrap().total_amount.to_string(), "999999999999.00");
        let too_big = parse("a", "a@b.co", [item("x", 100, &max), item("y", 1, "1.00")]);
        assert_eq!(fields(too_big), ["items"]);
    }

    #[test]
    fn order_ids_are_positive_i64() {
        for (text, ok) in [
            ("1", true),
            ("9223372036854775807", true),
            ("0", false),
            ("-1", false),
            ("9223372036854775808", false),
            ("abc", false),
            ("1.0", false),
            ("", false),
        ] {
            assert_eq!(OrderId::parse(text).is_ok(), ok, "id {text:?}");
        }
    }
}
