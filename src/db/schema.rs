// @generated automatically by Diesel CLI.

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        request_hash -> Text,
        order_id -> Int8,
        created_at -> Timestamptz,
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

diesel::joinable!(idempotency_keys -> orders (order_id));
diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(order_status_history -> orders (order_id));

diesel::allow_tables_to_appear_in_same_query!(
    idempotency_keys,
    order_items,
    order_status_history,
    orders,
);
