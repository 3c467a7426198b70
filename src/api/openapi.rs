//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! `ToSchema` types, and the Swagger UI that shows it (served from assets compiled into the
//! binary: nothing is fetched at build or run time).
//!
//! A new endpoint needs its `#[utoipa::path]` and an entry in `paths(...)` below; the answers
//! every `/api/v1` operation can give (401, 500, 503), and `X-Request-Id` on every operation,
//! are added to it here.

use actix_web::{web, HttpResponse};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::auth::ApiKeys;
use super::error::ErrorBody;
use super::headers::X_REQUEST_ID;
use super::{events, health, metrics, orders};

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
pub const DOCS_PATH: &str = "/docs";
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Takes orders, reads them back, pages through them and moves them \
                       through their lifecycle. Every error answer is JSON `{\"error\", \"code\"}`.",
    ),
    paths(
        health::health,
        health::live,
        health::ready,
        metrics::metrics,
        orders::create_order,
        orders::list_orders,
        orders::get_order,
        orders::update_status,
        orders::order_history,
        events::list_events,
        events::stream_events,
        events::event_deliveries,
    ),
    tags(
        (name = "orders", description = "Create, read, list and change orders"),
        (name = "events", description = "What happened to orders, in an order no consumer can miss an event in"),
        (name = "health", description = "Liveness and database reachability"),
        (name = "operations", description = "Prometheus metrics"),
    ),
)]
struct ApiDoc;

/// The document as this server answers: the bearer scheme is always declared, and required
/// on every `/api/v1` operation (with its 401 answer) only when API keys are configured.
pub fn document(keys_required: bool) -> Document {
    let mut doc = ApiDoc::openapi();
    let error = error_schema(&mut doc);
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "One of the keys in the server's API_KEYS. Required on /api/v1 only \
                         when the server has API_KEYS set; this document says so per operation.",
                    ))
                    .build(),
            ),
        );
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if path.starts_with("/api/v1/") {
                add_api_responses(operation, keys_required, &error);
            }
            add_request_id(operation);
        }
    }
    doc
}

/// Registers the error body's schema and returns a reference to it.
fn error_schema(doc: &mut Document) -> Ref {
    let components = doc.components.get_or_insert_with(Default::default);
    let name = ErrorBody::name();
    let mut schemas = vec![(name.to_string(), ErrorBody::schema())];
    ErrorBody::schemas(&mut schemas);
    components.schemas.extend(schemas);
    Ref::from_schema_name(name)
}

/// The answers any `/api/v1` operation can give besides its own.
fn add_api_responses(operation: &mut Operation, keys_required: bool, error: &Ref) {
    add_response(operation, "500", "A bug; the cause is in the log", error);
    add_response(
        operation,
        "503",
        "Database unreachable or busy; retry after `Retry-After` seconds",
        error,
    );
    if keys_required {
        add_response(
            operation,
            "401",
            "No `Authorization: Bearer <key>` with a configured key",
            error,
        );
        operation.security = Some(vec![SecurityRequirement::new(BEARER, [""; 0])]);
    }
}

/// Every operation takes an optional `X-Request-Id` and answers with one.
fn add_request_id(operation: &mut Operation) {
    operation.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name(X_REQUEST_ID.as_str())
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .schema(Some(String::schema()))
            .description(Some(
                "Names the request in the server's log. Kept when it is 1–128 visible \
                     ASCII characters, otherwise (or when absent) replaced by a generated UUID; \
                     never a reason to refuse the request.",
            ))
            .build(),
    );
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response.headers.insert(
                X_REQUEST_ID.as_str().to_owned(),
                HeaderBuilder::new()
                    .schema(String::schema())
                    .description(Some(
                        "The request's id: the client's `X-Request-Id`, or the one generated for it",
                    ))
                    .build(),
            );
        }
    }
}

fn add_response(operation: &mut Operation, status: &str, description: &str, error: &Ref) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(error.clone())).build(),
                )
                .into()
        });
}

/// `GET /api/v1/openapi.json`: readable without an API key, so clients can learn how to
/// authenticate. Built per request: it is small, and the handlers' cost dwarfs it.
pub async fn openapi_json(keys: web::Data<ApiKeys>) -> HttpResponse {
    HttpResponse::Ok().json(document(keys.required()))
}

/// Swagger UI under `/docs/`, pointed at the document above.
pub fn docs() -> SwaggerUi {
    SwaggerUi::new(format!("{DOCS_PATH}/{{_:.*}}")).config(Config::new([OPENAPI_PATH]))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn json(keys_required: bool) -> Value {
        serde_json::to_value(document(keys_required)).unwrap()
    }

    #[test]
    fn every_api_operation_documents_its_server_side_failures() {
        let doc = json(false);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = &operation["responses"];
                if path.starts_with("/api/v1/") {
                    for status in ["500", "503"] {
                        assert!(
                            responses[status].is_object(),
                            "{method} {path} documents {status}"
                        );
                    }
                    assert!(operation.get("security").is_none(), "open without keys");
                }
            }
        }
    }

    #[test]
    fn with_keys_every_api_operation_requires_the_bearer_scheme() {
        let doc = json(true);
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let secured = operation.get("security").is_some();
                assert_eq!(
                    secured,
                    path.starts_with("/api/v1/"),
                    "{method} {path}: security"
                );
                assert_eq!(
                    operation["responses"]["401"].is_object(),
                    secured,
                    "{method} {path}: 401"
                );
            }
        }
    }
}
