// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "xid8", schema = "pg_catalog"))]
    pub struct Xid8;
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        request_hash -> Text,
        order_id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Xid8;

    order_events (id) {
        id -> Int8,
        tx_id -> Xid8,
        order_id -> Int8,
        #[sql_name = "type"]
        type_ -> Text,
        from_status -> Nullable<Text>,
        to_status -> Nullable<Text>,
        data -> Nullable<Json>,
        occurred_at -> Timestamptz,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    order_items (id) {
        id -> Int8,
        order_id -> Int8,
        product_name -> Text,
        quantity -> Int4,
        unit_price -> Numeric,
        total_price -> Numeric,
    }
}

diesel::table! {
    order_status_history (id) {
        id -> Int8,
        order_id -> Int8,
        from_status -> Nullable<Text>,
        to_status -> Text,
        changed_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        customer_name -> Text,
        customer_email -> Text,
        total_amount -> Numeric,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (event_id, url) {
        event_id -> Int8,
        url -> Text,
        state -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_failed_attempts (event_id, url, attempt) {
        event_id -> Int8,
        url -> Text,
        attempt -> Int4,
        failed_at -> Timestamptz,
        error -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    idempotency_keys,
    order_events,
    order_items,
    order_status_history,
    orders,
    webhook_deliveries,
    webhook_failed_attempts,
);
