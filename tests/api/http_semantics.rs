//! HTTP as a careful client uses it: HEAD, compression, entity tags and conditional requests,
//! and query parameters a route does not take.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{error_body, seed_order, spawn_app};

#[actix_web::test]
async fn head_answers_as_get_would_without_a_body() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();

    for path in [
        "/health".to_owned(),
        "/health/ready".to_owned(),
        "/api/v1/orders".to_owned(),
        format!("/api/v1/orders/{id}"),
        format!("/api/v1/orders/{id}/history"),
    ] {
        let get = app.get(&path).await;
        let head = app.request(Method::HEAD, &path).await;

        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path} describes the same body"
        );
        assert_eq!(
            head.headers().get("etag"),
            get.headers().get("etag"),
            "HEAD {path}"
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has no body"
        );
    }
    let put = app
        .request(Method::DELETE, &format!("/api/v1/orders/{id}"))
        .await;
    assert_eq!(put.headers()["allow"], "GET, HEAD");
}

#[actix_web::test]
async fn answers_are_compressed_only_when_the_client_asks() {
    let app = spawn_app().await;
    for _ in 0..20 {
        app.created(&seed_order()).await;
    }
    let page = |encoding: Option<&'static str>| {
        let mut request = app.client.get(app.url("/api/v1/orders?limit=100"));
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        request.send()
    };

    let plain = page(None).await.unwrap();
    assert_eq!(plain.headers().get("content-encoding"), None);
    let plain_len = plain.bytes().await.unwrap().len();
    for encoding in ["gzip", "br", "zstd"] {
        let compressed = page(Some(encoding)).await.unwrap();
        assert_eq!(compressed.status(), 200);
        assert_eq!(
            compressed.headers()["content-encoding"],
            encoding,
            "asked for {encoding}"
        );
        let len = compressed.bytes().await.unwrap().len();
        assert!(
            len * 4 < plain_len,
            "{encoding}: {len} bytes for a {plain_len}-byte page"
        );
    }
}

#[actix_web::test]
async fn answers_under_a_kilobyte_go_uncompressed_even_when_the_client_asks() {
    // Go's HTTP client asks for gzip on every request: compressing an order of a few hundred
    // bytes would cost the server more than the bytes it saves.
    let app = spawn_app().await;
    let created = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("accept-encoding", "gzip, br, zstd")
        .json(&seed_order())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    for response in [
        created,
        app.client
            .get(app.url(&location))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.headers().get("content-encoding"), None);
        let body = response.bytes().await.unwrap();
        assert!(body.len() < 1024, "{} bytes", body.len());
        serde_json::from_slice::<serde_json::Value>(&body).expect("plain JSON");
    }
}

#[actix_web::test]
async fn the_listener_queues_a_thousand_connections_for_clients_that_open_one_per_request() {
    // With a queue of 128 (what a listener bound by the standard library gets), 500 clients
    // connecting at once had SYNs dropped, each costing its client a second.
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().unwrap();
    let listed = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) lists the listening sockets");
    let listed = String::from_utf8_lossy(&listed.stdout);
    // State, Recv-Q, Send-Q (for a listener: its queue's length), local address, peer.
    let queue: u32 = listed
        .split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("a listener on port {port}: {listed:?}"));
    assert!(queue >= 1024, "the listen queue holds {queue}");
}

#[actix_web::test]
async fn every_answer_compressed_on_request_is_really_compressed() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    // Answers of every kind: a page, an order, the probes, metrics, and errors, whose JSON body
    // is written after the handler (a body swapped after compression would be sent as plain
    // text under `Content-Encoding: gzip`).
    for path in [
        "/api/v1/orders?limit=100".to_owned(),
        format!("/api/v1/orders/{id}"),
        "/api/v1/orders/999999".to_owned(),
        "/api/v1/orders/x".to_owned(),
        "/api/v1/orders?staus=pending".to_owned(),
        "/no/such/route".to_owned(),
        "/health".to_owned(),
        "/metrics".to_owned(),
    ] {
        let response = app
            .client
            .get(app.url(&path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        let encoding = response.headers().get("content-encoding").cloned();
        let body = response.bytes().await.unwrap();
        if encoding.is_some_and(|e| e == "gzip") {
            assert_eq!(
                body.get(..2),
                Some(&[0x1f, 0x8b][..]),
                "{path}: a gzip stream"
            );
        } else {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok() || path == "/metrics",
                "{path}: uncompressed, and readable as such"
            );
        }
    }
}

#[actix_web::test]
async fn an_order_carries_an_etag_and_if_none_match_answers_304() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    let path = format!("/api/v1/orders/{id}");

    let first = app.get(&path).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with(&format!("\"{id}-")), "{etag}");

    let get_if_none_match = |tag: &str| {
        app.client
            .get(app.url(&path))
            .header("if-none-match", tag)
            .send()
    };

    let unchanged = get_if_none_match(&etag).await.unwrap();
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"].to_str().unwrap(), etag);
    assert!(unchanged.bytes().await.unwrap().is_empty());

    let changed = app.set_status(id, "processing").await;
    let new_etag = changed.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag, "a status change makes a new version");
    let after = get_if_none_match(&etag).await.unwrap();
    assert_eq!(after.status(), 200, "the old tag no longer matches");
    assert_eq!(after.headers()["etag"].to_str().unwrap(), new_etag);
}

#[actix_web::test]
async fn if_match_refuses_a_change_to_an_order_that_changed_since_it_was_read() {
    let app = spawn_app().await;
    let id = app.created(&seed_order()).await["id"].as_i64().unwrap();
    let path = format!("/api/v1/orders/{id}/status");
    let read = app.get(&format!("/api/v1/orders/{id}")).await;
    let seen = read.headers()["etag"].to_str().unwrap().to_owned();
    let put = |if_match: &str, status: &str| {
        app.client
            .put(app.url(&path))
            .header("if-match", if_match)
            .json(&json!({ "status": status }))
            .send()
    };

    let first = put(&seen, "processing").await.unwrap();
    assert_eq!(first.status(), 200, "the version read is the current one");
    let now = first.headers()["etag"].to_str().unwrap().to_owned();

    let stale = put(&seen, "cancelled").await.unwrap();
    assert_eq!(
        stale.headers()["etag"].to_str().unwrap(),
        now,
        "412 says what the order's version is now"
    );
    error_body(stale, 412, "precondition_failed").await;
    let order: serde_json::Value = app
        .get(&format!("/api/v1/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        order["status"], "processing",
        "the refused change wrote nothing"
    );

    let weak = put(&format!("W/{now}"), "completed").await.unwrap();
    error_body(weak, 412, "precondition_failed").await;
    let no_tag = put("not-a-tag", "completed").await.unwrap();
    error_body(no_tag, 412, "precondition_failed").await;
    let any = put("*", "completed").await.unwrap();
    assert_eq!(any.status(), 200, "* accepts any version");
}

#[actix_web::test]
async fn an_unknown_query_parameter_is_refused_by_name() {
    let app = spawn_app().await;
    for (query, name) in [("?staus=pending", "staus"), ("?limit=5&limt=5", "limt")] {
        let response = app.list_orders(query).await;

        let error = error_body(response, 400, "unknown_parameter").await;
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(name), "{query}: {message}");
        assert!(
            message
                .contains("limit, cursor, status, customer_email, created_after, created_before"),
            "names the accepted parameters: {message}"
        );
    }
    assert_eq!(
        app.list_orders("?limit=5&status=pending").await.status(),
        200
    );
}
