//! The domain's per-request work: validating a create request, exact money arithmetic, the
//! status state machine and the idempotency fingerprint. No I/O.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use order_service::domain::{
    CreateRequest, IdempotencyKey, ItemInput, Money, NewOrder, OrderStatus,
};

/// The stress client's order: two lines, 1 × 99.99 and 2 × 49.99.
const STRESS_ITEMS: [(&str, i64, &str); 2] = [("Widget", 1, "99.99"), ("Gadget", 2, "49.99")];

fn parse(items: &[(&str, i64, &str)]) -> NewOrder {
    let inputs = items.iter().map(|&(name, quantity, price)| {
        Ok(ItemInput {
            product_name: Ok(name),
            quantity: Ok(quantity),
            unit_price: Ok(price),
        })
    });
    NewOrder::parse(
        Ok("StressTest Customer 1"),
        Ok("stress1@example.com"),
        Ok(inputs),
    )
    .expect("valid order")
}

fn validation(c: &mut Criterion) {
    let largest: Vec<(String, i64, String)> = (0..100)
        .map(|n| (format!("Product {n}"), n + 1, format!("{n}.99")))
        .collect();
    let largest: Vec<(&str, i64, &str)> = largest
        .iter()
        .map(|(name, quantity, price)| (name.as_str(), *quantity, price.as_str()))
        .collect();

    let mut group = c.benchmark_group("validate create request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("2 items", |b| b.iter(|| parse(black_box(&STRESS_ITEMS))));
    group.bench_function("100 items (the maximum)", |b| {
        b.iter(|| parse(black_box(&largest)))
    });
    group.finish();
}

fn money(c: &mut Criterion) {
    c.bench_function("money: parse 2 prices, multiply, sum", |b| {
        b.iter(|| {
            STRESS_ITEMS
                .iter()
                .map(|&(_, quantity, price)| {
                    Money::parse_unit_price(black_box(price))
                        .expect("valid price")
                        .times(quantity as u32)
                })
                .sum::<Money>()
        })
    });
}

fn state_machine(c: &mut Criterion) {
    let statuses = OrderStatus::ALL;
    c.bench_function("state machine: all 16 transitions", |b| {
        b.iter(|| {
            statuses
                .iter()
                .flat_map(|from| statuses.iter().map(move |to| from.transition(*to).is_ok()))
                .filter(|allowed| *allowed)
                .count()
        })
    });
}

fn fingerprint(c: &mut Criterion) {
    let request = CreateRequest {
        order: parse(&STRESS_ITEMS),
        key: Some(IdempotencyKey::parse("order-2026-11-25-0001").expect("valid key")),
        traceparent: None,
    };
    c.bench_function("idempotency fingerprint (SHA-256 of the order)", |b| {
        b.iter(|| black_box(&request).fingerprint())
    });
}

criterion_group!(benches, validation, money, state_machine, fingerprint);
criterion_main!(benches);
