use actix_web::http::header::{self, ETag, EntityTag, Header, IfMatch, IfNoneMatch};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ErrorBody, ErrorCode};
use super::headers::{CONSISTENCY_TOKEN, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use super::json::{Field, Integer, JsonKind};
use super::params::reject_unknown_parameters;
use super::ApiError;
use crate::actors::{ChangeStatus, CreateOrder, Executor, GetHistory, GetOrder, ListOrders};
use crate::db::Created;
use crate::domain::{
    ConsistencyToken, CreateRequest, Cursor, FilterInput, IdempotencyKey, ItemInput, ListFilter,
    NewOrder, Order, OrderId, OrderStatus, PageLimit, PageRequest, Precondition, StatusChange,
    UnknownStatus, ValidationErrors,
};

/// A new order. Every problem is reported at once, as `400 validation_failed` with one
/// `details` entry per field: broken rules, missing fields and values of the wrong JSON type.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "a JSON object")]
pub struct CreateOrderRequest {
    /// 1–255 characters after trimming surrounding whitespace; no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, example = "John Doe")]
    #[serde(default)]
    customer_name: Field<String>,
    /// A plausible address `local@domain.tld`, at most 255 characters.
    #[schema(value_type = String, required = true, format = Email, max_length = 255, example = "john@example.com")]
    #[serde(default)]
    customer_email: Field<String>,
    /// The order total (the lines' `quantity × unit_price` summed) must not exceed
    /// 999,999,999,999.99.
    #[schema(value_type = Vec<CreateItemRequest>, required = true, min_items = 1, max_items = 100)]
    #[serde(default)]
    items: Field<Vec<Field<CreateItemRequest>>>,
}

/// One order line.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "a JSON object")]
pub struct CreateItemRequest {
    /// 1–255 characters after trimming surrounding whitespace; no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, example = "Laptop")]
    #[serde(default)]
    product_name: Field<String>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1_000_000, example = 1)]
    #[serde(default)]
    quantity: Field<Integer>,
    /// Kept as the number's decimal text so that the price is parsed exactly, never via f64.
    /// At most two decimals.
    #[schema(value_type = f64, required = true, minimum = 0, maximum = 9_999_999_999.99, example = 999.99)]
    #[serde(default)]
    unit_price: Field<serde_json::Number>,
}

impl JsonKind for CreateItemRequest {
    const KIND: &'static str = "an object";
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    status: Option<String>,
    customer_email: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
}

/// One page of the newest-first order list.
#[derive(Serialize, ToSchema)]
pub struct OrderPageResponse {
    orders: Vec<Order>,
    /// Pass it back as `cursor`, with the same filters, for the next page; `null` on the last
    /// page.
    #[schema(
        required = true,
        example = "NjY2ODdhYWRmODYyYmQ3Ny4yMDI2LTExLTI0VDEzOjA1OjAxLjEyMzQ1NlpfNDI"
    )]
    next_cursor: Option<String>,
}

/// An order's status changes, oldest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryResponse {
    order_id: OrderId,
    /// The first entry is the order's creation (`from_status` null, `to_status` pending).
    history: Vec<StatusChange>,
}

#[derive(Deserialize, ToSchema)]
#[serde(expecting = "a JSON object")]
pub struct StatusRequest {
    #[schema(value_type = OrderStatus, required = true)]
    #[serde(default)]
    status: Field<String>,
}

fn parse_id(id: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(id).map_err(|message| ApiError::bad_request(ErrorCode::InvalidId, message))
}

/// Create an order with its items (`POST /api/v1/orders`).
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "Makes retries safe: a repeat with the same key and body answers the original order instead of creating another")),
    responses(
        (status = 201, description = "Stored with its items and first history row, or replayed for a repeated Idempotency-Key", body = Order,
            headers(("location" = String, description = "/api/v1/orders/{id} of the new order"),
                    ("idempotent-replayed" = String, description = "`true` when the answer replays an earlier request with the same Idempotency-Key"),
                    ("consistency-token" = String, description = "Only with replicas configured: an opaque token of this write. Sent back as `Consistency-Token` \
                        on a read, it makes the read see this write or something newer"))),
        (status = 422, description = "The Idempotency-Key was used before with a different body (`idempotency_key_reused`)", body = ErrorBody),
        (status = 400, description = "`validation_failed`: every field that is missing, of the wrong JSON type or breaking a rule, one `details` entry each; \
            `invalid_json`: the body is not JSON at all; `invalid_body`: the body could not be read; `invalid_idempotency_key`", body = ErrorBody),
        (status = 408, description = "Body not received within the request timeout", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not sent as `application/json`", body = ErrorBody),
    ),
)]
pub async fn create_order(
    executor: web::Data<Executor>,
    http: HttpRequest,
    body: web::Json<CreateOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let items = request.items.given().map(|items| {
        items.iter().map(|item| {
            item.given().map(|item| ItemInput {
                product_name: item.product_name.given().map(String::as_str),
                quantity: item.quantity.given().map(|quantity| quantity.0),
                // The number's text as sent: no float ever touches a price.
                unit_price: item.unit_price.given().map(serde_json::Number::as_str),
            })
        })
    });
    let order = NewOrder::parse(
        request.customer_name.given().map(String::as_str),
        request.customer_email.given().map(String::as_str),
        items,
    )?;
    let key = idempotency_key(&http)?;
    let created = executor
        .send(CreateOrder(CreateRequest {
            order,
            key,
            // The executor fills it in when traces are on.
            traceparent: None,
        }))
        .await?;
    let (order, replayed) = match created.value {
        Created::New(order) => (order, false),
        Created::Replayed(order) => (order, true),
    };
    let mut response = HttpResponse::Created();
    with_token(&mut response, created.position);
    response.insert_header((
        header::LOCATION,
        format!("/api/v1/orders/{}", order.id.get()),
    ));
    if replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Ok(response.json(order))
}

/// The request's `Consistency-Token`; `None` without one.
fn consistency_token(http: &HttpRequest) -> Result<Option<ConsistencyToken>, ApiError> {
    let Some(value) = http.headers().get(CONSISTENCY_TOKEN) else {
        return Ok(None);
    };
    value
        .to_str()
        .map_err(|e| e.to_string())
        .and_then(ConsistencyToken::parse)
        .map(Some)
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidConsistencyToken, message))
}

/// Gives the answer its `Consistency-Token`, when replicas are configured.
fn with_token(response: &mut HttpResponseBuilder, position: Option<ConsistencyToken>) {
    if let Some(position) = position {
        response.insert_header((CONSISTENCY_TOKEN, position.to_string()));
    }
}

fn idempotency_key(http: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = http.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let parsed = value
        .to_str()
        .map_err(|e| e.to_string())
        .and_then(IdempotencyKey::parse);
    parsed
        .map(Some)
        .map_err(|message| ApiError::bad_request(ErrorCode::InvalidIdempotencyKey, message))
}

/// Read one order with its items (`GET /api/v1/orders/{id}`).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(
        ("id" = i64, Path, description = "The order's id, a positive 64-bit integer", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a copy the client holds: `304` while it is current"),
        ("Consistency-Token" = Option<String>, Header, description = "A `Consistency-Token` this API answered: the read sees that point or something newer"),
    ),
    responses(
        (status = 200, description = "The order with its items", body = Order,
            headers(("etag" = String, description = "The order's version; it changes with every status change"))),
        (status = 304, description = "`If-None-Match` named the current version: no body",
            headers(("etag" = String, description = "The order's version"))),
        (status = 400, description = "The id is not a positive 64-bit integer (`invalid_id`), or a bad \
            `Consistency-Token` (`invalid_consistency_token`)", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    ),
)]
pub async fn get_order(
    executor: web::Data<Executor>,
    http: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let at = consistency_token(&http)?;
    let order = executor
        .send(GetOrder { id, at })
        .await?
        .value
        .ok_or(ApiError::OrderNotFound)?;
    let tag = entity_tag(&order);
    // A malformed If-None-Match is ignored: the full answer is always a safe one.
    let unchanged = match IfNoneMatch::parse(&http) {
        Ok(IfNoneMatch::Any) => true,
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|seen| seen.weak_eq(&tag)),
        Err(_) => false,
    };
    if unchanged {
        return Ok(HttpResponse::NotModified()
            .insert_header(ETag(tag))
            .finish());
    }
    Ok(HttpResponse::Ok().insert_header(ETag(tag)).json(order))
}

/// The order's version as an HTTP entity tag.
fn entity_tag(order: &Order) -> EntityTag {
    EntityTag::new_strong(order.version().tag().to_owned())
}

/// `If-Match` as the domain's precondition; `None` without the header. Weak tags never match,
/// as HTTP's strong comparison wants, and a header that names no valid tag matches nothing.
fn precondition(http: &HttpRequest) -> Option<Precondition> {
    if !http.headers().contains_key(header::IF_MATCH) {
        return None;
    }
    Some(match IfMatch::parse(http) {
        Ok(IfMatch::Any) => Precondition::AnyVersion,
        Ok(IfMatch::Items(tags)) => Precondition::OneOf(
            tags.into_iter()
                .filter(|tag| !tag.weak)
                .map(|tag| tag.tag().to_owned())
                .collect(),
        ),
        Err(_) => Precondition::OneOf(Vec::new()),
    })
}

/// The query parameters of the order list.
const LIST_PARAMETERS: [&str; 6] = [
    "limit",
    "cursor",
    "status",
    "customer_email",
    "created_after",
    "created_before",
];

/// List orders, newest first, one page at a time, optionally filtered
/// (`GET /api/v1/orders?limit=&cursor=&status=&customer_email=&created_after=&created_before=`).
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    params(
        ("limit" = Option<i64>, Query, description = "Orders per page", minimum = 1, maximum = 100, example = 10),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, sent with the same filters as that page. \
            The legacy `<RFC 3339 time>_<id>` cursor is accepted with any filters"),
        ("status" = Option<String>, Query, description = "Only orders in this status, or in any of several, comma-separated: \
            `pending`, `processing`, `completed`, `cancelled`", example = "pending,processing"),
        ("customer_email" = Option<String>, Query, description = "Only orders with this e-mail address, ignoring case", example = "john@example.com"),
        ("created_after" = Option<String>, Query, format = DateTime, description = "Only orders created after this RFC 3339 time (exclusive)",
            example = "2026-11-24T00:00:00Z"),
        ("created_before" = Option<String>, Query, format = DateTime, description = "Only orders created before this RFC 3339 time (exclusive); \
            must be later than `created_after`", example = "2026-11-25T00:00:00Z"),
        ("Consistency-Token" = Option<String>, Header, description = "A `Consistency-Token` this API answered: the read sees that point or something newer"),
    ),
    responses(
        (status = 200, description = "Newest first, by `created_at` then `id`; the filters combine with AND", body = OrderPageResponse,
            headers(("consistency-token" = String, description = "Only with replicas configured: an opaque token of the point \
                this page was read at; `next_cursor` carries it, so that the next page is read there or later"))),
        (status = 400, description = "A bad `limit` (`invalid_limit`) or `cursor` (`invalid_cursor`, also for a cursor sent with other filters \
            than its page's), bad filters (`validation_failed`, one detail per parameter), a parameter the route does not take \
            (`unknown_parameter`), a query string that cannot be read (`invalid_query`), or a bad `Consistency-Token` \
            (`invalid_consistency_token`)", body = ErrorBody),
    ),
)]
pub async fn list_orders(
    executor: web::Data<Executor>,
    http: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    reject_unknown_parameters(http.query_string(), &LIST_PARAMETERS)?;
    let limit = PageLimit::parse(query.limit.as_deref())
        .map_err(|m| ApiError::bad_request(ErrorCode::InvalidLimit, m))?;
    let filter = ListFilter::parse(FilterInput {
        status: query.status.as_deref(),
        customer_email: query.customer_email.as_deref(),
        created_after: query.created_after.as_deref(),
        created_before: query.created_before.as_deref(),
    })?;
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| Cursor::parse(cursor, &filter))
        .transpose()
        .map_err(|m| ApiError::bad_request(ErrorCode::InvalidCursor, m))?;
    // The page sees what the client has seen: its own writes, and the page before.
    let at = consistency_token(&http)?.max(after.and_then(|cursor| cursor.read_at));
    let page = executor
        .send(ListOrders {
            page: PageRequest {
                limit,
                filter: filter.clone(),
                after,
            },
            at,
        })
        .await?;
    let read_at = page.position;
    let mut response = HttpResponse::Ok();
    with_token(&mut response, read_at);
    Ok(response.json(OrderPageResponse {
        orders: page.value.orders,
        next_cursor: page
            .value
            .next
            .map(|cursor| Cursor { read_at, ..cursor }.token(&filter)),
    }))
}

/// An order's status changes, oldest first (`GET /api/v1/orders/{id}/history`).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/history",
    tag = "orders",
    params(
        ("id" = i64, Path, description = "The order's id, a positive 64-bit integer", minimum = 1),
        ("Consistency-Token" = Option<String>, Header, description = "A `Consistency-Token` this API answered: the read sees that point or something newer"),
    ),
    responses(
        (status = 200, description = "Every status the order had, from its creation on, each written in the same transaction as the change", body = HistoryResponse),
        (status = 400, description = "The id is not a positive 64-bit integer (`invalid_id`), or a bad `Consistency-Token` \
            (`invalid_consistency_token`)", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    ),
)]
pub async fn order_history(
    executor: web::Data<Executor>,
    http: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let at = consistency_token(&http)?;
    let history = executor
        .send(GetHistory { id, at })
        .await?
        .value
        .ok_or(ApiError::OrderNotFound)?;
    Ok(HttpResponse::Ok().json(HistoryResponse {
        order_id: id,
        history,
    }))
}

/// Move an order through its lifecycle (`PUT /api/v1/orders/{id}/status`).
#[utoipa::path(
    put,
    path = "/api/v1/orders/{id}/status",
    tag = "orders",
    params(
        ("id" = i64, Path, description = "The order's id, a positive 64-bit integer", minimum = 1),
        ("If-Match" = Option<String>, Header, description = "Change only if the order is still at this version (its `ETag`), or `*`"),
    ),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The order after the change (unchanged when it already had that status)", body = Order,
            headers(("etag" = String, description = "The order's version after the change"),
                    ("consistency-token" = String, description = "Only with replicas configured: an opaque token of this write. Sent back as `Consistency-Token` \
                        on a read, it makes the read see this write or something newer"))),
        (status = 400, description = "`validation_failed` (no status, not a string, or unknown), `invalid_id`, `invalid_json`, `invalid_body`", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 408, description = "Body not received within the request timeout", body = ErrorBody),
        (status = 409, description = "The lifecycle forbids this move; `current_status` and `allowed_transitions` say what is possible", body = ErrorBody),
        (status = 412, description = "`If-Match` named another version than the current one (`precondition_failed`); `ETag` is the current one", body = ErrorBody,
            headers(("etag" = String, description = "The order's current version"))),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not sent as `application/json`", body = ErrorBody),
    ),
)]
pub async fn update_status(
    executor: web::Data<Executor>,
    http: HttpRequest,
    id: web::Path<String>,
    body: web::Json<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let precondition = precondition(&http);
    let to: OrderStatus = body
        .status
        .given()
        .and_then(|status| status.parse().map_err(|e: UnknownStatus| e.to_string()))
        .map_err(|message| ValidationErrors::single("status", message))?;
    let changed = executor
        .send(ChangeStatus {
            id,
            to,
            precondition,
        })
        .await?;
    let mut response = HttpResponse::Ok();
    with_token(&mut response, changed.position);
    Ok(response
        .insert_header(ETag(entity_tag(&changed.value)))
        .json(changed.value))
}
