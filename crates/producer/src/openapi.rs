//! The OpenAPI 3.1 document of the producer's HTTP API — the tenant API (`/v1`, bearer
//! `tenant_key`), the operator API (`/admin/v1`, bearer `operator_key`), the health routes and
//! `GET /openapi.json` itself — generated from the code, so it cannot drift:
//!
//! - [`crate::routes()`] declares every route with `utoipa_axum::routes!` from its handler's
//!   `#[utoipa::path]`: the router [`crate::app`] serves and the document's paths come from that
//!   one declaration, so a route cannot be served without its entry (the health routes likewise,
//!   from [`longhaul_service::health::routes()`]);
//! - [`document`] completes it with what only the registry knows: each kind's input schema
//!   ([`longhaul_core::kind::JobKind::input_schema`]) as the component `<Kind>Input`, and the
//!   submit request `JobRequest` as a union over the kinds — one `<Kind>JobRequest` each, whose
//!   `kind` names it and whose `input` is that kind's input — discriminated by `kind`;
//! - [`to_json`] writes it the one way it is served (`GET /openapi.json`, built once with the
//!   [`AppState`]), printed (`producer openapi`) and checked in (`docs/openapi.json`; a test fails
//!   when they differ: regenerate with `LONGHAUL_UPDATE_OPENAPI=1 cargo test -p longhaul-producer
//!   --test openapi`).
//!
//! Error answers are the reusable responses below ([`BadRequest`] …), each an [`ApiProblem`].

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use longhaul_core::Registry;
use serde_json::{Map, Value, json};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder,
    Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::{PartialSchema as _, ToSchema};

use crate::error::ApiProblem;
use crate::{AppState, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, MAX_JOB_BODY_BYTES};

/// Where a JSON pointer to a component schema starts.
const SCHEMAS: &str = "#/components/schemas/";

/// What the document says of the API as a whole.
const DESCRIPTION: &str = "longhaul runs long, multi-stage jobs for many tenants: a job is recorded \
before it is queued, and its record — status, stage, progress, output or error — is the truth a \
client reads.\n\n\
- The **tenant API** (`/v1`) takes a tenant's API key (`Authorization: Bearer <key>`, security \
scheme `tenant_key`): submit jobs (one, or a batch), list and read them, cancel, retry, and follow \
one as server-sent events.\n\
- The **operator API** (`/admin/v1`) takes an operator key (`operator_key`): every tenant's jobs, \
queues and pauses, limits, dead letters. Every change is audited.\n\n\
Every error is an `application/problem+json` document (`ApiProblem`) whose `retryable` says \
whether the same request may succeed later. Each job kind's input is a schema of its own \
(`<Kind>Input`); `JobRequest` is the union of the kinds' submissions, discriminated by `kind`.";

/// The document before its routes: info, tags, security schemes, the problem schema and the
/// reusable error responses.
pub(crate) fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("longhaul")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
        .build();
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
        )
    };
    let mut named = Vec::new();
    <ApiProblem as ToSchema>::schemas(&mut named);
    let components = ComponentsBuilder::new()
        .security_scheme(
            "tenant_key",
            bearer("A tenant's API key, issued by `producer tenant create` (shown once)."),
        )
        .security_scheme(
            "operator_key",
            bearer(
                "An operator key, issued by `producer operators create` (shown once). A tenant's key is \
                 `403` here.",
            ),
        )
        .schema(ApiProblem::name(), ApiProblem::schema())
        .schemas_from_iter(named)
        .responses_from_iter(problem_responses())
        .build();
    let tag =
        |name: &str, description: &str| TagBuilder::new().name(name).description(Some(description)).build();
    OpenApiBuilder::new()
        .info(info)
        .components(Some(components))
        .tags(Some([
            tag(
                "jobs",
                "A tenant's jobs: submit (one, or a batch), list, read, cancel, retry, and follow one as \
                 server-sent events.",
            ),
            tag("tickets", "The triage kind's tickets; served when the producer has the triage kind."),
            tag(
                "operator",
                "The operator API: every tenant's jobs, queues and pauses, limits, dead letters. Changes \
                 are audited `operator:<name>`.",
            ),
            tag("health", "Probes: the process is alive, its dependencies answer."),
            tag("openapi", "This document."),
        ]))
        .build()
}

/// A header an error response sends.
enum ProblemHeader {
    /// `Retry-After`, in seconds.
    RetryAfter,
    /// `WWW-Authenticate: Bearer`.
    WwwAuthenticate,
}

/// An error response: `description`, an [`ApiProblem`] body, and `headers`.
fn problem(description: String, headers: &[ProblemHeader]) -> utoipa::openapi::Response {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name(ApiProblem::name()))).build();
    let mut response =
        ResponseBuilder::new().description(description).content("application/problem+json", body);
    for h in headers {
        response = match h {
            ProblemHeader::RetryAfter => response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                    .description(Some("Seconds to wait before trying again."))
                    .build(),
            ),
            ProblemHeader::WwwAuthenticate => response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("`Bearer`."))
                    .build(),
            ),
        };
    }
    response.build()
}

/// The reusable error responses: a type each (what `response = …` of a `#[utoipa::path]` names),
/// and [`problem_responses`], all of them as components.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident: $description:expr $(, $header:ident)*;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                    (stringify!($name), problem($description, &[$(ProblemHeader::$header),*]).into())
                }
            }
        )*

        /// Every reusable error response, by name.
        fn problem_responses() -> Vec<(&'static str, RefOr<utoipa::openapi::Response>)> {
            vec![$(<$name as utoipa::ToResponse>::response()),*]
        }
    };
}

problem_responses! {
    /// `400`.
    BadRequest: "The request is malformed: a body that is not a JSON object (or is sent without \
        `Content-Type: application/json`), an unknown field, a bad query parameter or header. \
        `errors` names the fields when it can.".to_owned();
    /// `401` on the tenant API.
    Unauthorized: "No valid API key: send `Authorization: Bearer <tenant API key>`.".to_owned(),
        WwwAuthenticate;
    /// `401` on the operator API.
    OperatorUnauthorized: "No valid operator key: send `Authorization: Bearer <operator key>` (issued by \
        `producer operators create`).".to_owned(), WwwAuthenticate;
    /// `403`: a tenant's key on the operator API.
    Forbidden: "A tenant's API key: the operator API takes an operator key.".to_owned();
    /// `404`.
    NotFound: "Not found — also another tenant's, answered alike.".to_owned();
    /// `409`.
    Conflict: "The request conflicts with the resource's state (the detail says how); repeating it \
        changes nothing.".to_owned();
    /// `413`.
    PayloadTooLarge: format!(
        "The body is larger than the route takes: {MAX_JOB_BODY_BYTES} bytes for `POST /v1/jobs`, \
         {MAX_BATCH_BODY_BYTES} for `POST /v1/jobs/batch`, {MAX_BODY_BYTES} elsewhere."
    );
    /// `422`.
    Unprocessable: "The request is well-formed, but a value is not acceptable: `errors` names each field \
        at fault. Nothing was written, nothing was enqueued.".to_owned();
    /// `429`.
    TooManyRequests: "Too many at once for this tenant (the detail names the limit): try again after \
        `Retry-After`.".to_owned(), RetryAfter;
    /// `503`.
    Unavailable: "A dependency (application storage, the queue) is unavailable: try again after \
        `Retry-After`. Also when the request outlived the request timeout (then with an empty \
        body). A job whose record was written is not lost: the same request finds it.".to_owned(),
        RetryAfter;
    /// `500`.
    Internal: "An unexpected error; it has been logged.".to_owned();
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "openapi",
    operation_id = "openapi",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this producer's API, generated from its code and its job \
        kinds. No key needed.",
    responses((
        status = 200,
        description = "This document: the producer's API, with the input schema of each job kind it \
            accepts (also checked in as `docs/openapi.json` for the shipped kinds).",
        content_type = "application/json",
        body = Object,
    ))
)]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.clone()).into_response()
}

/// The OpenAPI document of a producer with the kinds of `registry`: every route [`crate::routes()`]
/// declares, the health routes, and the kinds' input schemas.
pub fn document(registry: &Registry) -> Value {
    let mut api = crate::routes(registry).into_openapi();
    let ready: longhaul_service::health::ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    api.merge(longhaul_service::health::routes(ready).into_openapi());
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        add_kinds(schemas, registry);
    }
    doc
}

/// Adds to `schemas` each kind's input schema (`<Kind>Input`) and its submission
/// (`<Kind>JobRequest`: the `JobRequest` fields with `kind` that kind and `input` its input), and
/// makes `JobRequest` their union, discriminated by `kind`. With no kind, `JobRequest` stays as
/// the code declares it.
fn add_kinds(schemas: &mut Map<String, Value>, registry: &Registry) {
    let Some(template) = schemas.get("JobRequest").cloned() else { return };
    let mut used: BTreeSet<String> = schemas.keys().cloned().collect();
    let mut variants = Vec::new();
    let mut mapping = Map::new();
    for kind in registry.names() {
        let base = component_name(kind, &used);
        let (input, request) = (format!("{base}Input"), format!("{base}JobRequest"));
        used.extend([base, input.clone(), request.clone()]);
        let schema = registry.input_schema(kind).cloned().unwrap_or_else(|| json!({}));
        schemas.insert(input.clone(), schema);
        let mut variant = template.clone();
        if let Some(properties) = variant.get_mut("properties").and_then(Value::as_object_mut) {
            let said = |field: &str| properties.get(field).and_then(|p| p.get("description")).cloned();
            let kind_schema = json!({"type": "string", "enum": [kind], "description": said("kind")});
            let input_schema = json!({"$ref": format!("{SCHEMAS}{input}"), "description": said("input")});
            properties.insert("kind".into(), without_nulls(kind_schema));
            properties.insert("input".into(), without_nulls(input_schema));
        }
        if let Some(object) = variant.as_object_mut() {
            object.insert("description".into(), format!("A `{kind}` job: its input is `{input}`.").into());
        }
        schemas.insert(request.clone(), variant);
        let reference = format!("{SCHEMAS}{request}");
        variants.push(json!({"$ref": reference}));
        mapping.insert(kind.to_owned(), reference.into());
    }
    if variants.is_empty() {
        return;
    }
    let mut union = json!({
        "oneOf": variants,
        "discriminator": {"propertyName": "kind", "mapping": mapping},
    });
    if let (Some(description), Some(object)) = (template.get("description"), union.as_object_mut()) {
        object.insert("description".into(), description.clone());
    }
    schemas.insert("JobRequest".into(), union);
}

/// `value` without its `null` members.
fn without_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    value
}

/// The component name of kind `kind`: its words in PascalCase (`enrich-contact` →
/// `EnrichContact`), with a number added when that name (or its `Input`/`JobRequest`) is `used`.
fn component_name(kind: &str, used: &BTreeSet<String>) -> String {
    let words = kind.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty());
    let pascal: String = words
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let pascal = if pascal.is_empty() { "Kind".to_owned() } else { pascal };
    let taken = |name: &str| {
        [name.to_owned(), format!("{name}Input"), format!("{name}JobRequest")]
            .iter()
            .any(|n| used.contains(n))
    };
    if !taken(&pascal) {
        return pascal;
    }
    (2..).map(|n| format!("{pascal}{n}")).find(|name| !taken(name)).unwrap_or(pascal)
}

/// `doc` as JSON the one way it is served, printed and checked in: pretty (two spaces), every
/// object's keys sorted — the top level's in the specification's order (`openapi` first) — and
/// a final newline. The same on every build, whatever the JSON map's order.
pub fn to_json(doc: &Value) -> String {
    const TOP: [&str; 9] = [
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
    ];
    let Value::Object(top) = sorted(doc.clone()) else {
        return format!("{}\n", serde_json::to_string_pretty(doc).unwrap_or_default());
    };
    let mut keys: Vec<&String> = top.keys().collect();
    keys.sort_by_key(|k| (TOP.iter().position(|t| t == k).unwrap_or(TOP.len()), k.as_str()));
    let members: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let value = serde_json::to_string_pretty(&top[k]).unwrap_or_default().replace('\n', "\n  ");
            format!("  {}: {value}", Value::String(k.clone()))
        })
        .collect();
    format!("{{\n{}\n}}\n", members.join(",\n"))
}

/// `value` with every object rebuilt in key order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// [`document`] of `registry` as [`to_json`] writes it.
pub fn pretty(registry: &Registry) -> String {
    to_json(&document(registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_become_component_names() {
        let mut used = BTreeSet::new();
        assert_eq!(component_name("triage", &used), "Triage");
        assert_eq!(component_name("enrich-contact", &used), "EnrichContact");
        assert_eq!(component_name("a.b:c_d", &used), "ABCD");
        used.insert("EnrichContactInput".to_owned());
        assert_eq!(component_name("enrich_contact", &used), "EnrichContact2");
        used.insert("JobRecord".to_owned());
        assert_eq!(component_name("job-record", &used), "JobRecord2");
    }

    #[test]
    fn the_json_is_sorted_with_openapi_first() {
        let doc = json!({"paths": {"/b": 1, "/a": 2}, "openapi": "3.1.0", "components": {"z": [], "a": {}}});
        let text = to_json(&doc);
        assert!(text.starts_with("{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {\n    \"/a\": 2,"), "{text}");
        assert!(text.ends_with("}\n") && !text.ends_with("}\n\n"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("JSON"), doc);
    }
}
