use actix_web::http::header::{self, HeaderName};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::ApiError;
use crate::actors::{ChangeStatus, CreateOrder, Executors, GetHistory, GetOrder, ListOrders};
use crate::db::Created;
use crate::domain::{
    CreateRequest, Cursor, FilterInput, IdempotencyKey, ItemInput, ListFilter, NewOrder, Order,
    OrderId, OrderStatus, PageLimit, PageRequest, StatusChange, ValidationErrors,
};

pub(super) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub(super) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A new order. Every broken rule is reported at once, as `400 validation_failed`.
#[derive(Deserialize, ToSchema)]
pub struct CreateOrderRequest {
    /// 1–255 characters after trimming surrounding whitespace; no NUL.
    #[schema(min_length = 1, max_length = 255, example = "John Doe")]
    customer_name: String,
    /// A plausible address `local@domain.tld`, at most 255 characters.
    #[schema(format = Email, max_length = 255, example = "john@example.com")]
    customer_email: String,
    /// The order total (the lines' `quantity × unit_price` summed) must not exceed
    /// 999,999,999,999.99.
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<CreateItemRequest>,
}

/// One order line.
#[derive(Deserialize, ToSchema)]
pub struct CreateItemRequest {
    /// 1–255 characters after trimming surrounding whitespace; no NUL.
    #[schema(min_length = 1, max_length = 255, example = "Laptop")]
    product_name: String,
    #[schema(minimum = 1, maximum = 1_000_000, example = 1)]
    #[serde(deserialize_with = "super::json::integer")]
    quantity: i64,
    /// Kept as the number's decimal text so that the price is parsed exactly, never via f64.
    /// At most two decimals.
    #[schema(value_type = f64, minimum = 0, maximum = 9_999_999_999.99, example = 999.99)]
    unit_price: serde_json::Number,
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
pub struct StatusRequest {
    #[schema(value_type = OrderStatus)]
    status: String,
}

fn parse_id(id: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(id).map_err(|message| ApiError::bad_request("invalid_id", message))
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
                    ("idempotent-replayed" = String, description = "`true` when the answer replays an earlier request with the same Idempotency-Key"))),
        (status = 422, description = "The Idempotency-Key was used before with a different body (`idempotency_key_reused`)", body = ErrorBody),
        (status = 400, description = "A field breaks a rule (`validation_failed`) or the body is not the JSON expected (`invalid_json`)", body = ErrorBody),
        (status = 408, description = "Body not received within the request timeout", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not sent as `application/json`", body = ErrorBody),
    ),
)]
pub async fn create_order(
    executors: web::Data<Executors>,
    http: HttpRequest,
    body: web::Json<CreateOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let prices: Vec<String> = request
        .items
        .iter()
        .map(|item| item.unit_price.to_string())
        .collect();
    let items = request
        .items
        .iter()
        .zip(&prices)
        .map(|(item, price)| ItemInput {
            product_name: &item.product_name,
            quantity: item.quantity,
            unit_price: price,
        });
    let order = NewOrder::parse(&request.customer_name, &request.customer_email, items)?;
    let key = idempotency_key(&http)?;
    let (order, replayed) = match executors
        .send(CreateOrder(CreateRequest { order, key }))
        .await?
    {
        Created::New(order) => (order, false),
        Created::Replayed(order) => (order, true),
    };
    let mut response = HttpResponse::Created();
    response.insert_header((
        header::LOCATION,
        format!("/api/v1/orders/{}", order.id.get()),
    ));
    if replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Ok(response.json(order))
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
        .map_err(|message| ApiError::bad_request("invalid_idempotency_key", message))
}

/// Read one order with its items (`GET /api/v1/orders/{id}`).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(("id" = i64, Path, description = "The order's id, a positive 64-bit integer", minimum = 1)),
    responses(
        (status = 200, description = "The order with its items", body = Order),
        (status = 400, description = "The id is not a positive 64-bit integer", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    ),
)]
pub async fn get_order(
    executors: web::Data<Executors>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let order = executors
        .send(GetOrder(id))
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    Ok(HttpResponse::Ok().json(order))
}

/// List orders, newest first, one page at a time, optionally filtered
/// (`GET /api/v1/orders?limit=&cursor=&status=&customer_email=&created_after=&created_before=`).
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    params(
        ("limit" = Option<i64>, Query, description = "Orders per page", minimum = 1, maximum = 100, example = 10),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, sent with the same filters as that page. \
            The seed's `<RFC 3339 time>_<id>` form is accepted with any filters"),
        ("status" = Option<String>, Query, description = "Only orders in this status, or in any of several, comma-separated: \
            `pending`, `processing`, `completed`, `cancelled`", example = "pending,processing"),
        ("customer_email" = Option<String>, Query, description = "Only orders with this e-mail address, ignoring case", example = "john@example.com"),
        ("created_after" = Option<String>, Query, format = DateTime, description = "Only orders created after this RFC 3339 time (exclusive)",
            example = "2026-11-24T00:00:00Z"),
        ("created_before" = Option<String>, Query, format = DateTime, description = "Only orders created before this RFC 3339 time (exclusive); \
            must be later than `created_after`", example = "2026-11-25T00:00:00Z"),
    ),
    responses(
        (status = 200, description = "Newest first, by `created_at` then `id`; the filters combine with AND", body = OrderPageResponse),
        (status = 400, description = "A bad `limit` (`invalid_limit`) or `cursor` (`invalid_cursor`, also for a cursor sent with other filters \
            than its page's), or bad filters (`validation_failed`, one detail per parameter)", body = ErrorBody),
    ),
)]
pub async fn list_orders(
    executors: web::Data<Executors>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = PageLimit::parse(query.limit.as_deref())
        .map_err(|m| ApiError::bad_request("invalid_limit", m))?;
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
        .map_err(|m| ApiError::bad_request("invalid_cursor", m))?;
    let page = executors
        .send(ListOrders(PageRequest {
            limit,
            filter: filter.clone(),
            after,
        }))
        .await?;
    Ok(HttpResponse::Ok().json(OrderPageResponse {
        orders: page.orders,
        next_cursor: page.next.map(|cursor| cursor.token(&filter)),
    }))
}

/// An order's status changes, oldest first (`GET /api/v1/orders/{id}/history`).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}/history",
    tag = "orders",
    params(("id" = i64, Path, description = "The order's id, a positive 64-bit integer", minimum = 1)),
    responses(
        (status = 200, description = "Every status the order had, from its creation on, each written in the same transaction as the change", body = HistoryResponse),
        (status = 400, description = "The id is not a positive 64-bit integer", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
    ),
)]
pub async fn order_history(
    executors: web::Data<Executors>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let history = executors
        .send(GetHistory(id))
        .await?
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
    params(("id" = i64, Path, description = "The order's id, a positive 64-bit integer", minimum = 1)),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The order after the change (unchanged when it already had that status)", body = Order),
        (status = 400, description = "Unknown status, bad id or bad JSON", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 408, description = "Body not received within the request timeout", body = ErrorBody),
        (status = 409, description = "The lifecycle forbids this move; `current_status` and `allowed_transitions` say what is possible", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not sent as `application/json`", body = ErrorBody),
    ),
)]
pub async fn update_status(
    executors: web::Data<Executors>,
    id: web::Path<String>,
    body: web::Json<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let to: OrderStatus = body
        .status
        .parse()
        .map_err(|e: crate::domain::UnknownStatus| {
            ValidationErrors::single("status", e.to_string())
        })?;
    let order = executors.send(ChangeStatus { id, to }).await?;
    Ok(HttpResponse::Ok().json(order))
}
