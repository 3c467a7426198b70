//! The database path: orders created through a `DbExecutor` against a real PostgreSQL.
//!
//! Uses `BENCH_DATABASE_URL`, else the service's own configuration (`.env`, `DATABASE_URL`,
//! `POSTGRES_*`); `make db-up` starts one. Skipped, with a message, when none is reachable.
//! It writes real orders (customer "Bench Customer") into that database.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use order_service::actors::{CreateOrder, Executors, GetOrder, Relay};
use order_service::config::Config;
use order_service::db::{run_migrations, ConnectOptions, Created, Pool};
use order_service::domain::{CreateRequest, ItemInput, NewOrder};

fn bench_order() -> CreateRequest {
    let items = [("Stress Item A", 1, "99.99"), ("Stress Item B", 2, "49.99")].map(
        |(name, quantity, price)| {
            Ok(ItemInput {
                product_name: Ok(name),
                quantity: Ok(quantity),
                unit_price: Ok(price),
            })
        },
    );
    let order = NewOrder::parse(
        Ok("Bench Customer"),
        Ok("bench@example.com"),
        Ok(items.into_iter()),
    )
    .expect("valid order");
    CreateRequest {
        order,
        key: None,
        traceparent: None,
    }
}

fn database() -> Option<ConnectOptions> {
    let _ = dotenvy::dotenv();
    match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => ConnectOptions::parse(&url).ok(),
        Err(_) => Config::from_env().ok().map(|c| c.database),
    }
}

fn db_path(c: &mut Criterion) {
    let Some(database) = database() else {
        eprintln!("skipping database benches: no usable configuration");
        return;
    };
    let system = actix_rt::System::new();
    if let Err(e) = system.block_on(run_migrations(&database)) {
        eprintln!("skipping database benches: {e} (start a database with `make db-up`)");
        return;
    }
    let mut config = Config::from_lookup(|_| None).expect("defaults");
    config.pool.min_idle = 1;
    let executors = Executors::default();
    let executor = system.block_on(async {
        let pool = Pool::build(&database, &config.pool, None);
        let (relay, _) = Relay::start(
            pool.clone(),
            tokio::sync::watch::Sender::new(()),
            config.webhooks.as_ref(),
        );
        executors.start(pool, None, Duration::from_secs(2), relay)
    });
    let create = || async {
        match executor
            .send(CreateOrder(bench_order()))
            .await
            .expect("order stored")
            .value
        {
            Created::New(order) | Created::Replayed(order) => order,
        }
    };
    let id = system.block_on(create()).id;

    let mut group = c.benchmark_group("db_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("create one order (one transaction)", |b| {
        b.iter(|| system.block_on(create()))
    });
    group.bench_function("get one order by id", |b| {
        b.iter(|| {
            system
                .block_on(executor.send(GetOrder { id, at: None }))
                .expect("read")
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("create 100 orders at once (group commit)", |b| {
        b.iter(|| system.block_on(futures_util::future::join_all((0..100).map(|_| create()))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = db_path
}
criterion_main!(benches);
