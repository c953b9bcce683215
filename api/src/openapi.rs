//! The API's contract: OpenAPI 3.1 generated from the handlers' own annotations and types, at
//! `GET /openapi.json`, with Swagger UI (compiled in, nothing fetched from elsewhere) at
//! `GET /docs/`. Each route module lists its operations beside the routes it registers; this
//! module joins them and adds what every operation shares: the security schemes, the refusals
//! any authenticated or rate-limited request may get, and the headers on every answer.

use actix_web::{web, HttpResponse};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::routes;

pub const DOCUMENT_PATH: &str = "/openapi.json";
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payledger",
        description = "An event-sourced payment ledger. Commands append immutable events; reads come from projections. \
Money is a decimal string in the currency's minor-unit scale, never a number. Errors are `application/problem+json` (RFC 9457). \
Commands that move money take an `Idempotency-Key`: a retry with the same key answers the first outcome and moves nothing twice.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "payments", description = "Create, read, capture, refund, void and sync payments."),
        (name = "catalog", description = "What a checkout may offer: methods, fees, PSE banks, public keys."),
        (name = "webhooks", description = "Provider notifications, authenticated by each provider's own signature scheme."),
        (name = "reports", description = "Analyst projections: daily analytics, failures, the double-entry ledger."),
        (name = "audit", description = "The hash-chained event stream for auditors."),
        (name = "keys", description = "API key lifecycle (admin keys)."),
        (name = "health", description = "Liveness, readiness and per-part health; figures for operator keys."),
    ),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
)]
struct Root;

/// The whole contract, as served.
pub fn document() -> Document {
    let mut doc = Root::openapi();
    for part in [
        routes::payments::Api::openapi(),
        routes::customers::Api::openapi(),
        routes::catalog::Api::openapi(),
        routes::checkout::Api::openapi(),
        routes::webhooks::Api::openapi(),
        routes::webhook_endpoints::Api::openapi(),
        routes::reports::Api::openapi(),
        routes::audit::Api::openapi(),
        routes::keys::Api::openapi(),
        routes::health::Api::openapi(),
        routes::operator_health::Api::openapi(),
        crate::metrics::Api::openapi(),
    ] {
        doc.merge(part);
    }
    shared_parts(&mut doc);
    doc
}

pub fn configure(cfg: &mut web::ServiceConfig, doc: &Document) {
    cfg.route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header(("Location", "/docs/"))
                .finish()
        }),
    )
    .service(SwaggerUi::new("/docs/{_:.*}").url(DOCUMENT_PATH, doc.clone()));
}

/// A string schema of exactly these values: enums whose values come from the domain's own
/// lists, so the contract cannot name a value the code does not take.
pub fn one_of_texts<'a>(values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().map(str::to_owned)))
}

/// A decimal amount as the API writes and reads it.
pub fn money_text() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[0-9]{1,13}(\.[0-9]{1,2})?$"))
        .description(Some(
            "A decimal string at most at the currency's scale (COP and USD: 2, JPY and CLP: 0); never a JSON number.",
        ))
        .examples([serde_json::json!("125000.00")])
}

/// A signed decimal figure of a report (sums, balances, rates), as a string.
pub fn decimal_text() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
}

pub fn optional_decimal_text() -> ObjectBuilder {
    decimal_text().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
        Type::String,
        Type::Null,
    ]))
}

pub fn currency_code() -> ObjectBuilder {
    one_of_texts(domain::Currency::ALL.iter().map(|c| c.code())).description(Some("ISO 4217 code"))
}

pub fn payment_status() -> ObjectBuilder {
    one_of_texts(domain::PaymentStatus::VISIBLE.iter().map(|s| s.as_str()))
}

pub fn capture_mode() -> ObjectBuilder {
    use domain::CaptureMode;
    one_of_texts([CaptureMode::Automatic, CaptureMode::Manual].map(CaptureMode::as_str))
}

pub fn payment_method_type() -> ObjectBuilder {
    one_of_texts(domain::PaymentMethodType::ALL.iter().map(|m| m.as_str()))
}

/// Headers on every answer, by name.
const ANSWER_HEADERS: [(&str, &str, Type); 4] = [
    (
        "X-Request-Id",
        "The request's id: the caller's `X-Request-Id` when well-formed, else a new one. \
It is in the logs and in the metadata of the events the request appended.",
        Type::String,
    ),
    (
        "RateLimit-Limit",
        "Requests allowed per second in the bucket that served this request.",
        Type::Integer,
    ),
    (
        "RateLimit-Remaining",
        "Requests left in that bucket now.",
        Type::Integer,
    ),
    (
        "RateLimit-Reset",
        "Seconds until that bucket is full again.",
        Type::Integer,
    ),
];

/// Refusals any operation of a kind may answer, by component name: (status, name, description).
const SHARED_REFUSALS: [(&str, &str, &str); 9] = [
    (
        "401",
        "Unauthorized",
        "No credentials, or a key or token that is unknown, revoked or expired.",
    ),
    ("403", "Forbidden", "The key's role may not do this."),
    (
        "503",
        "Unavailable",
        "A part the request needs (the database, the read model) is unavailable; retry later.",
    ),
    ("400", "NotJson", "The body is not valid JSON."),
    (
        "413",
        "BodyTooLarge",
        "The body is larger than the server takes.",
    ),
    (
        "415",
        "NotJsonMediaType",
        "The body is not declared `Content-Type: application/json`.",
    ),
    (
        "422",
        "InvalidBody",
        "A field is missing, unknown or not valid; `errors[]` names each one.",
    ),
    (
        "422",
        "InvalidQuery",
        "A query parameter is not valid; `errors[]` names each one.",
    ),
    (
        "429",
        "RateLimited",
        "Rate limited: retry after `Retry-After` seconds.",
    ),
];

fn component_ref(kind: &str, name: &str) -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::new(format!("#/components/{kind}/{name}"))
}

fn header(description: &str, kind: Type) -> utoipa::openapi::header::Header {
    let mut schema = ObjectBuilder::new().schema_type(kind.clone());
    if kind == Type::Integer {
        schema = schema.minimum(Some(0));
    }
    HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn with_answer_headers(response: &mut Response) {
    for (name, _, _) in ANSWER_HEADERS {
        response
            .headers
            .insert(name.into(), RefOr::Ref(component_ref("headers", name)));
    }
}

fn problem(description: &str) -> Response {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(component_ref("schemas", "Problem"))))
                .build(),
        )
        .build();
    with_answer_headers(&mut response);
    response
}

/// What every operation shares, added once here rather than on each handler.
fn shared_parts(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key: `pl_live_…` or `pl_test_…` (test keys are refused in production). \
Roles: checkout (its merchant's payments), analyst, auditor, operator, admin.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "jwt",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT from the configured issuer (RS256 or ES256), verified against its JWKS; \
its claims name the role and the merchant.",
                ))
                .build(),
        ),
    );
    for (name, description, kind) in ANSWER_HEADERS {
        components
            .headers
            .insert(name.into(), RefOr::T(header(description, kind)));
    }
    components.headers.insert(
        "Retry-After".into(),
        RefOr::T(header(
            "Seconds until a request would be allowed.",
            Type::Integer,
        )),
    );
    for (_, name, description) in SHARED_REFUSALS {
        let mut response = problem(description);
        if name == "RateLimited" {
            response.headers.insert(
                "Retry-After".into(),
                RefOr::Ref(component_ref("headers", "Retry-After")),
            );
        }
        components.responses.insert(name.into(), RefOr::T(response));
    }
    doc.security = Some(vec![
        utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
        utoipa::openapi::security::SecurityRequirement::new("jwt", Vec::<String>::new()),
    ]);
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            shared_responses(operation);
        }
    }
}

/// A body that may be left out is documented as not required, not as a JSON `null` (which
/// the API refuses like any other body that is not an object).
fn optional_body(operation: &mut Operation) {
    let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else {
            continue;
        };
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
            let null = |item: &RefOr<Schema>| matches!(item, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
            if one_of.items.len() == 2 && one_of.items.iter().any(null) {
                content.schema = one_of.items.iter().find(|item| !null(item)).cloned();
            }
        }
    }
}

fn shared_responses(operation: &mut Operation) {
    optional_body(operation);
    // Public operations list an empty requirement (`security(())`); all others take a key.
    let authenticated = operation.security.as_ref().is_none_or(|requirements| {
        !requirements.iter().any(|requirement| {
            serde_json::to_value(requirement)
                .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
        })
    });
    // A body this API parses itself (webhooks take each provider's own format).
    let takes_body = matches!(&operation.request_body, Some(RefOr::T(body))
        if body.content.keys().all(|media| media == "application/json"));
    let takes_query =
        operation.parameters.iter().flatten().any(
            |parameter| matches!(parameter, RefOr::T(p) if p.parameter_in == ParameterIn::Query),
        );
    let responses = &mut operation.responses.responses;
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            with_answer_headers(response);
        }
    }
    let applies = |name: &str| match name {
        "Unauthorized" | "Forbidden" | "Unavailable" => authenticated,
        "NotJson" | "BodyTooLarge" | "NotJsonMediaType" | "InvalidBody" => takes_body,
        "InvalidQuery" => takes_query,
        _ => true,
    };
    for (status, name, _) in SHARED_REFUSALS {
        if applies(name) {
            // An operation's own description of a status wins over the shared one.
            responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::Ref(component_ref("responses", name)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn contract() -> Value {
        serde_json::to_value(document()).expect("the contract serializes")
    }

    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                all.push((format!("{} {path}", method.to_uppercase()), operation));
            }
        }
        all
    }

    /// Every `$ref` in `value`, JSON pointers into the document.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_contract_is_openapi_3_1_with_both_ways_to_authenticate() {
        let doc = contract();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["scheme"], "bearer");
        assert_eq!(schemes["jwt"]["bearerFormat"], "JWT");
        assert_eq!(
            doc["security"],
            serde_json::json!([{"api_key": []}, {"jwt": []}])
        );
    }

    #[test]
    fn a_problem_names_one_of_the_types_the_contract_lists() {
        let doc = contract();
        let listed: Vec<&str> = doc["components"]["schemas"]["Problem"]["properties"]["type"]
            ["enum"]
            .as_array()
            .expect("the problem types are enumerated")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed.len(), crate::problem::ProblemType::ALL.len());
        for uri in [
            "https://payledger.dev/problems/provider-outcome-unknown",
            "https://payledger.dev/problems/rate-limited",
            "https://payledger.dev/problems/idempotency-key-reused",
        ] {
            assert!(listed.contains(&uri), "{uri} in {listed:?}");
        }
        // The example a reader sees names a listed type too.
        let example = doc["components"]["schemas"]["Problem"]["example"]["type"]
            .as_str()
            .expect("an example type");
        assert!(listed.contains(&example), "{example}");
    }

    #[test]
    fn every_operation_is_named_tagged_described_and_answers_problems() {
        let doc = contract();
        let mut ids = BTreeSet::new();
        for (name, operation) in operations(&doc) {
            let id = operation["operationId"].as_str().expect(&name);
            assert!(ids.insert(id.to_owned()), "{name}: operationId {id} twice");
            assert!(operation["tags"][0].is_string(), "{name} has no tag");
            assert!(operation["summary"].is_string(), "{name} has no summary");
            let responses = operation["responses"].as_object().expect(&name);
            assert!(responses.contains_key("429"), "{name}: rate limits");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let target = response["$ref"].as_str();
                    let problem = &response["content"][PROBLEM_JSON];
                    let own_report = response["content"]["application/json"].is_object();
                    assert!(
                        target.is_some() || problem.is_object() || own_report,
                        "{name} {status} answers no problem"
                    );
                }
                let headers = &response["headers"];
                if response.get("$ref").is_none() {
                    assert!(headers["X-Request-Id"].is_object(), "{name} {status}");
                    assert!(
                        headers["RateLimit-Remaining"].is_object(),
                        "{name} {status}"
                    );
                }
            }
        }
        // The routes registered by the route modules, each documented.
        for id in [
            "createPayment",
            "capturePayment",
            "refundPayment",
            "voidPayment",
            "receiveWebhook",
            "createApiKey",
            "streamAuditEvents",
            "getMetrics",
        ] {
            assert!(ids.contains(id), "{id} is not in the contract");
        }
    }

    #[test]
    fn commands_that_move_money_or_save_a_method_require_an_idempotency_key() {
        let doc = contract();
        for (name, operation) in operations(&doc) {
            let id = operation["operationId"].as_str().unwrap_or_default();
            let moves_money = [
                "createPayment",
                "capturePayment",
                "refundPayment",
                "saveCustomerPaymentMethod",
            ]
            .contains(&id);
            let header = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "Idempotency-Key");
            assert_eq!(header.is_some(), moves_money, "{name}");
            if let Some(header) = header {
                assert_eq!(header["in"], "header");
                assert_eq!(header["required"], true);
            }
        }
    }

    #[test]
    fn every_reference_and_link_resolves() {
        let doc = contract();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50);
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(
                doc.pointer(pointer).is_some(),
                "{target} resolves to nothing"
            );
        }
        let ids: BTreeSet<&str> = operations(&doc)
            .iter()
            .filter_map(|(_, op)| op["operationId"].as_str())
            .collect();
        let mut links = 0;
        for (name, operation) in operations(&doc) {
            for response in operation["responses"].as_object().into_iter().flatten() {
                for (link, spec) in response.1["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = spec["operationId"].as_str().expect(link);
                    assert!(ids.contains(target), "{name} links {link} to {target}");
                }
            }
        }
        assert!(links >= 10, "create -> get -> capture -> refund are linked");
    }

    #[test]
    fn the_payment_method_schema_has_one_shape_per_method_type_and_one_for_a_saved_method() {
        let doc = contract();
        let variants = doc["components"]["schemas"]["CreatePaymentRequest"]["properties"]
            ["payment_method"]["oneOf"]
            .as_array()
            .expect("oneOf")
            .clone();
        let types: Vec<&str> = variants
            .iter()
            .filter_map(|v| v["properties"]["type"]["enum"][0].as_str())
            .collect();
        let expected: Vec<&str> = domain::PaymentMethodType::ALL
            .iter()
            .map(|m| m.as_str())
            .chain(["SAVED"])
            .collect();
        assert_eq!(types, expected);
        let saved = variants.last().expect("the saved shape");
        assert_eq!(saved["required"], serde_json::json!(["type", "id"]));
        let card = &variants[0];
        assert_eq!(card["required"], serde_json::json!(["type", "token"]));
        assert_eq!(card["additionalProperties"], false);
    }
}
