use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::actors::{ChangeStatus, CreateOrder, Executors, GetOrder, ListOrders};
use crate::domain::{
    Cursor, ItemInput, NewOrder, Order, OrderId, OrderStatus, PageLimit, PageRequest,
    ValidationErrors,
};

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
    let created = executors.send(CreateOrder(order)).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/orders/{}", created.id.get()),
        ))
        .json(created))
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
