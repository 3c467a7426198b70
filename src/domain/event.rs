//! Order events: what happened to an order, written with the change and read by consumers in
//! the order of the feed.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::order::positive_id;
use super::{Order, OrderId, OrderStatus, PageLimit};

/// The longest a feed request may wait for an event.
const MAX_WAIT_SECS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.status_changed")]
    OrderStatusChanged,
}

impl EventType {
    const ALL: [Self; 2] = [Self::OrderCreated, Self::OrderStatusChanged];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
            Self::OrderStatusChanged => "order.status_changed",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown event type {text:?}: expected order.created or order.status_changed"
                )
            })
    }
}

/// The id of a stored event: a positive 64-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(example = 1051)]
pub struct EventId(i64);

impl EventId {
    pub fn parse(text: &str) -> Result<Self, String> {
        positive_id(text, "event").map(Self)
    }

    /// Wraps an id the database assigned.
    pub fn from_stored(id: i64) -> Self {
        Self(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// As a client writes it, and as a webhook's `webhook-id` sends it.
impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A place in the feed: just after event `id` of transaction `tx`. Events are ordered by
/// `(tx, id)`, and a transaction's events are handed out only once no older transaction can
/// still commit, so a position never has an event appear behind it. Its text form, the
/// `cursor`, is `<tx>-<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EventPosition {
    pub tx: u64,
    pub id: i64,
}

impl EventPosition {
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split_once('-')
            .and_then(|(tx, id)| {
                Some(Self {
                    tx: tx.parse().ok()?,
                    id: id.parse().ok().filter(|id| *id >= 0)?,
                })
            })
            .ok_or_else(|| format!("cursor {text:?} is not a cursor of this feed (<tx>-<id>)"))
    }
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.tx, self.id)
    }
}

/// One page of the feed: events after `after`, of the given types (all when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRequest {
    pub after: EventPosition,
    pub limit: PageLimit,
    pub types: Vec<EventType>,
}

/// The `type` parameter of the feed: event types, comma-separated.
pub fn parse_event_types(text: Option<&str>) -> Result<Vec<EventType>, String> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut types = Vec::new();
    for name in text.split(',').map(str::trim) {
        let kind = EventType::parse(name)?;
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    Ok(types)
}

/// How long a feed request may wait for an event when none is there: `wait`, 0–30 seconds.
pub fn parse_wait(text: Option<&str>) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(Duration::ZERO);
    };
    match text.parse::<u64>() {
        Ok(secs) if secs <= MAX_WAIT_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "wait must be a whole number of seconds from 0 to {MAX_WAIT_SECS}, got {text:?}"
        )),
    }
}

/// A status change's event, to write in the transaction of the change. (A create's event is
/// written by the statement that stores the order.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub order_id: OrderId,
    pub from: OrderStatus,
    pub to: OrderStatus,
    /// The order after the change, as the API shows it.
    pub order_json: String,
    /// The W3C `traceparent` of the request that made the change, when its trace is sampled.
    pub traceparent: Option<String>,
}

impl NewEvent {
    pub fn status_changed(
        order: &Order,
        from: OrderStatus,
        to: OrderStatus,
        traceparent: Option<&str>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            order_id: order.id,
            from,
            to,
            order_json: serde_json::to_string(order)?,
            traceparent: traceparent.map(str::to_owned),
        })
    }

    /// The event as it was committed at `cursor`, at `timestamp`.
    pub fn committed(
        self,
        cursor: EventPosition,
        timestamp: DateTime<Utc>,
    ) -> Result<Event, serde_json::Error> {
        Ok(Event {
            id: EventId::from_stored(cursor.id),
            kind: EventType::OrderStatusChanged,
            timestamp,
            cursor,
            data: EventData {
                order: RawValue::from_string(self.order_json)?,
                from: Some(self.from),
                to: Some(self.to),
            },
            traceparent: self.traceparent,
        })
    }
}

/// A committed event, as the feed, the stream and webhooks show it: the envelope of the
/// Standard Webhooks conventions, `{"id", "type", "timestamp", "cursor", "data"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the transaction that made the change began.
    pub timestamp: DateTime<Utc>,
    /// Where this event sits in the feed: pass it as `after` to read what follows.
    #[schema(value_type = String, example = "7342-1051")]
    pub cursor: EventPosition,
    pub data: EventData,
    /// The W3C `traceparent` of the request that made the change, when its trace was sampled:
    /// its webhooks continue that trace. Not part of the envelope.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

impl Event {
    /// The `order.created` event of `order`, committed at `cursor`: the order as the create
    /// answered it, `pending` and last changed when created. `traceparent` is its request's.
    pub fn created(
        cursor: EventPosition,
        order: &Order,
        traceparent: Option<String>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: EventId::from_stored(cursor.id),
            kind: EventType::OrderCreated,
            timestamp: order.created_at,
            cursor,
            data: EventData {
                order: serde_json::value::to_raw_value(order)?,
                from: None,
                to: None,
            },
            traceparent,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventData {
    /// The order as it was right after the change.
    #[schema(value_type = Order)]
    pub order: Box<RawValue>,
    /// With `order.status_changed`: the status before.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub from: Option<OrderStatus>,
    /// With `order.status_changed`: the status after.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub to: Option<OrderStatus>,
}

impl Serialize for EventPosition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_tx_dash_id_and_nothing_else() {
        let position = EventPosition::parse("7342-1051").unwrap();
        assert_eq!(position, EventPosition { tx: 7342, id: 1051 });
        assert_eq!(position.to_string(), "7342-1051");
        for bad in [
            "",
            "7342",
            "-1051",
            "7342-",
            "a-1",
            "1-b",
            "1--2",
            "18446744073709551616-1",
        ] {
            assert!(EventPosition::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            EventPosition { tx: 2, id: 1 } > EventPosition { tx: 1, id: 9 },
            "the transaction orders first"
        );
    }

    #[test]
    fn types_and_wait_are_parsed_strictly() {
        assert_eq!(parse_event_types(None).unwrap(), []);
        assert_eq!(
            parse_event_types(Some("order.status_changed, order.created,order.created")).unwrap(),
            [EventType::OrderStatusChanged, EventType::OrderCreated]
        );
        assert!(parse_event_types(Some("order.deleted")).is_err());
        assert!(parse_event_types(Some("")).is_err());
        assert_eq!(parse_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("30")).unwrap(), Duration::from_secs(30));
        for bad in ["31", "-1", "1.5", "soon"] {
            assert!(parse_wait(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_event_serialises_as_the_standard_webhooks_envelope() {
        let event = Event {
            id: EventId::from_stored(9),
            kind: EventType::OrderStatusChanged,
            timestamp: DateTime::parse_from_rfc3339("2026-11-26T10:00:00.5Z")
                .unwrap()
                .into(),
            cursor: EventPosition { tx: 77, id: 9 },
            data: EventData {
                order: RawValue::from_string(r#"{"id":4,"status":"processing"}"#.into()).unwrap(),
                from: Some(OrderStatus::Pending),
                to: Some(OrderStatus::Processing),
            },
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"id":9,"type":"order.status_changed","timestamp":"2026-11-26T10:00:00.500Z","cursor":"77-9","data":{"order":{"id":4,"status":"processing"},"from":"pending","to":"processing"}}"#
        );
    }
}
