use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::actors::{ChangeStatus, CreateOrder, Executors, GetOrder, ListOrders};
use crate::db::Created;
use crate::domain::{
    CreateRequest, Cursor, IdempotencyKey, ItemInput, NewOrder, Order, OrderId, OrderStatus,
    PageLimit, PageRequest, ValidationErrors,
};

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

#[derive(Deserialize)]
pub struct CreateOrderRequest {
    customer_name: String,
    customer_email: String,
    items: Vec<CreateItemRequest>,
}

#[derive(Deserialize)]
pub struct CreateItemRequest {
    product_name: String,
    quantity: i64,
    /// Kept as the number's decimal text so that the price is parsed exactly, never via f64.
    unit_price: serde_json::Number,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct OrderPageResponse {
    orders: Vec<Order>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct StatusRequest {
    status: String,
}

fn parse_id(id: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(id).map_err(|message| ApiError::bad_request("invalid_id", message))
}

/// `POST /api/v1/orders`
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

/// `GET /api/v1/orders/{id}`
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

/// `GET /api/v1/orders?limit=&cursor=`
pub async fn list_orders(
    executors: web::Data<Executors>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = PageLimit::parse(query.limit.as_deref())
        .map_err(|m| ApiError::bad_request("invalid_limit", m))?;
    let after = query
        .cursor
        .as_deref()
        .map(Cursor::parse)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_cursor", m))?;
    let page = executors
        .send(ListOrders(PageRequest { limit, after }))
        .await?;
    Ok(HttpResponse::Ok().json(OrderPageResponse {
        orders: page.orders,
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// `PUT /api/v1/orders/{id}/status`
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
