//! The OpenAPI document: the checked-in `docs/openapi.json` is the one generated for the shipped
//! kinds (byte for byte), `GET /openapi.json` and `producer openapi` give that document, every
//! route registered in the source is in it and every operation in it is served as it says (its
//! security enforced, its methods and no others, an answer status it lists) — against the real
//! router on PostgreSQL and Redis — and it holds what clients need (OpenAPI 3.1, both security
//! schemes, each kind's input schema, references that resolve).
//!
//! Regenerate the checked-in document after changing the API:
//! `LONGHAUL_UPDATE_OPENAPI=1 cargo test -p longhaul-producer --test openapi`
//! (or `producer openapi > docs/openapi.json`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use clap::Parser as _;
use longhaul_core::kind::{JobKind, KindOptions, Stage};
use longhaul_core::{Registry, TenantId};
use longhaul_producer::openapi;
use longhaul_producer::startup::{self, Application, Config};
use longhaul_store::OperatorName;
use longhaul_testkit::{Backend, TestDb, TestQueue};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The document of the shipped producer, as served.
fn shipped() -> String {
    openapi::pretty(&startup::builtin().expect("the shipped kinds"))
}

/// The document's `(METHOD, path)` of every operation.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods.map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let file = root().join("docs/openapi.json");
    let generated = shipped();
    if std::env::var("LONGHAUL_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&file, &generated).expect("write docs/openapi.json");
        return;
    }
    let how = "regenerate it: `LONGHAUL_UPDATE_OPENAPI=1 cargo test -p longhaul-producer --test openapi` \
               (or `producer openapi > docs/openapi.json`), and commit it";
    let checked_in = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {how}", file.display()));
    if checked_in != generated {
        let line = checked_in.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let at = line.map_or_else(
            || {
                format!(
                    "the files differ in length ({} vs {} lines)",
                    checked_in.lines().count(),
                    generated.lines().count()
                )
            },
            |i| {
                let was = checked_in.lines().nth(i).unwrap_or_default();
                let now = generated.lines().nth(i).unwrap_or_default();
                format!("first difference at line {}:\n  checked in: {was}\n  generated:  {now}", i + 1)
            },
        );
        panic!("docs/openapi.json is not the document the code generates; {how}.\n{at}");
    }
}

#[test]
fn the_document_is_openapi_3_1_with_both_keys_and_each_kinds_input() {
    let doc: Value = serde_json::from_str(&shipped()).expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    for scheme in ["tenant_key", "operator_key"] {
        let s = &doc["components"]["securitySchemes"][scheme];
        assert_eq!(
            (s["type"].as_str(), s["scheme"].as_str()),
            (Some("http"), Some("bearer")),
            "{scheme}: {s}"
        );
    }
    // Each operation says which key it takes: the tenant's under /v1, an operator's under
    // /admin/v1, none elsewhere.
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let security = &op["security"];
        let expected = if path.starts_with("/v1/") {
            json!([{"tenant_key": []}])
        } else if path.starts_with("/admin/v1/") {
            json!([{"operator_key": []}])
        } else {
            Value::Null
        };
        assert_eq!(security, &expected, "{method} {path}");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
    }
    let schemas = &doc["components"]["schemas"];
    let triage = &schemas["TriageInput"];
    assert_eq!(triage["required"], json!(["ticket_id", "revision"]), "{triage}");
    assert_eq!(triage["properties"]["revision"]["minimum"], 1, "{triage}");
    let summarize = &schemas["SummarizeInput"];
    assert_eq!(summarize["required"], json!(["document_id", "text"]), "{summarize}");
    assert_eq!(summarize["properties"]["chunk_chars"]["maximum"], 16_000, "{summarize}");
    // The submission: one variant per kind, told apart by `kind`, whose `input` is the kind's.
    let request = &schemas["JobRequest"];
    assert_eq!(request["discriminator"]["propertyName"], "kind", "{request}");
    let mapping = request["discriminator"]["mapping"].as_object().expect("a mapping");
    assert_eq!(mapping.keys().collect::<Vec<_>>(), ["summarize", "triage"], "{request}");
    for (kind, input) in [("triage", "TriageInput"), ("summarize", "SummarizeInput")] {
        let variant_ref = mapping[kind].as_str().expect("a reference");
        assert!(request["oneOf"].as_array().expect("oneOf").contains(&json!({"$ref": variant_ref})));
        let variant = resolve(&doc, variant_ref).unwrap_or_else(|| panic!("{variant_ref} resolves"));
        assert_eq!(variant["properties"]["kind"]["enum"], json!([kind]), "{variant}");
        assert_eq!(variant["properties"]["input"]["$ref"], format!("#/components/schemas/{input}"));
        assert_eq!(variant["required"], json!(["kind", "input"]), "{variant}");
    }
    let submit = &doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(submit["$ref"], "#/components/schemas/JobRequest", "{submit}");
    let batch = &schemas["BatchRequest"]["properties"]["jobs"]["items"];
    assert_eq!(batch["$ref"], "#/components/schemas/JobRequest", "{batch}");
    // Errors are problem documents.
    let problem = &schemas["ApiProblem"];
    for field in ["type", "title", "status", "detail", "retryable"] {
        assert!(problem["required"].as_array().expect("required").contains(&json!(field)), "{problem}");
    }
    let events = &doc["paths"]["/v1/jobs/{job_id}/events"]["get"];
    assert!(events["responses"]["200"]["content"]["text/event-stream"].is_object(), "{events}");
    assert!(events["responses"]["429"].is_object(), "{events}");
    let headers: Vec<&str> = events["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "header")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(headers, ["Last-Event-ID"], "{events}");
}

/// What the JSON pointer `reference` (`#/…`) names in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

#[test]
fn every_reference_resolves_and_every_operation_id_is_unique() {
    let doc: Value = serde_json::from_str(&shipped()).expect("JSON");
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => out.push(r),
                _ => refs(v, out),
            }),
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "too few references: {}", all.len());
    for r in all {
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let id =
            doc["paths"][&path][method.to_lowercase()]["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(
            !id.is_empty() && ids.insert(id.clone()),
            "{method} {path}: operationId {id:?} missing or taken"
        );
    }
}

/// A kind of a user's: no schema of its own.
struct Export;

impl JobKind for Export {
    const NAME: &'static str = "data-export";
    type Input = Value;
    type Output = ();
    fn options() -> KindOptions {
        const STAGES: &[Stage] = &[Stage::new("all", 1)];
        KindOptions::new("exports", STAGES)
    }
}

#[test]
fn a_users_kind_appears_with_its_schema_and_triages_routes_only_with_triage() {
    let registry = Registry::new()
        .kind::<Export>()
        .expect("export")
        .kind::<longhaul_summarize::Summarize>()
        .expect("summarize");
    let doc = openapi::document(&registry);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["DataExportInput"], Export::input_schema(), "{:#}", schemas["DataExportInput"]);
    assert!(schemas["DataExportInput"]["description"].as_str().is_some_and(|d| d.contains("`data-export`")));
    let mapping = &schemas["JobRequest"]["discriminator"]["mapping"];
    assert_eq!(
        mapping,
        &json!({
            "data-export": "#/components/schemas/DataExportJobRequest",
            "summarize": "#/components/schemas/SummarizeJobRequest",
        })
    );
    assert!(schemas.get("TriageInput").is_none());
    let paths = operations(&doc);
    assert!(paths.iter().all(|(_, p)| !p.starts_with("/v1/tickets")), "{paths:?}");
    assert!(paths.contains(&("POST".to_owned(), "/v1/jobs".to_owned())));
    let shipped: Value = serde_json::from_str(&shipped()).expect("JSON");
    assert!(operations(&shipped).contains(&("POST".to_owned(), "/v1/tickets/{ticket_id}/triage".to_owned())));
}

#[tokio::test]
async fn producer_openapi_prints_the_document() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"))
        .arg("openapi")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("run producer openapi");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8(out.stdout).expect("UTF-8") == shipped(),
        "producer openapi printed another document"
    );
}

// ---------------------------------------------------------------------------------------------
// Route coverage, from the source: every registration is in the document.

/// The Rust files under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` without its whole-line comments (doc comments included), so prose that mentions a
/// registration is not taken for one.
fn code(text: &str) -> String {
    text.lines().map(|l| if l.trim_start().starts_with("//") { "" } else { l }).collect::<Vec<_>>().join("\n")
}

/// The text inside the parenthesis that opens at byte `open` of `text` (string literals skipped).
fn parenthesised(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    let (mut depth, mut in_str, mut i) = (0usize, false, open);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced parenthesis at byte {open}")
}

/// The first string literal of `args`, if it starts with one.
fn leading_literal(args: &str) -> Option<&str> {
    let rest = args.trim_start().strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// Paths that are not part of the API document: the operator console's HTML pages for browsers.
const NOT_API: &[&str] = &["/console"];

#[test]
fn every_route_registered_in_the_source_is_in_the_document() {
    let doc: Value = serde_json::from_str(&shipped()).expect("JSON");
    let documented = operations(&doc);
    let mut files = Vec::new();
    rust_files(&root().join("crates/producer/src"), &mut files);
    files.push(root().join("crates/service/src/health.rs"));
    let mut annotated = BTreeSet::new();
    let mut handlers_in_routes = BTreeSet::new();
    let mut annotated_fns = BTreeSet::new();
    for file in &files {
        let text = code(&std::fs::read_to_string(file).expect("read a source file"));
        let at = |i: usize| format!("{}:{}", file.display(), text[..i].lines().count());
        // Each `#[utoipa::path(method, path = "…")]`: an operation, and the handler below it.
        for (i, _) in text.match_indices("#[utoipa::path(") {
            let open = i + "#[utoipa::path".len();
            let args = parenthesised(&text, open);
            let method =
                args.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
            let path = args
                .split_once("path = ")
                .and_then(|(_, rest)| leading_literal(rest))
                .unwrap_or_else(|| panic!("{}: a #[utoipa::path] without a literal path", at(i)));
            annotated.insert((method.to_uppercase(), path.to_owned()));
            let after = &text[open + args.len() + 2..];
            let name = after
                .split_once("fn ")
                .and_then(|(_, rest)| rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next())
                .unwrap_or_default();
            annotated_fns.insert(name.to_owned());
        }
        // Each `routes!(a::b, c)`: handlers, which must be annotated ones.
        for (i, _) in text.match_indices("routes!(") {
            let args = parenthesised(&text, i + "routes!".len());
            for handler in args.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                let name = handler.rsplit("::").next().unwrap_or(handler);
                handlers_in_routes.insert((name.to_owned(), at(i)));
            }
        }
        // Each plain registration: `.route("…", get(…).post(…))`, `.route_service`, `.nest`.
        for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            for (i, _) in text.match_indices(call) {
                let args = parenthesised(&text, i + call.len() - 1);
                let Some(path) = leading_literal(args) else {
                    // Another type's `route` (a queue's partition), unless it builds a method router.
                    let routing = ["get(", "post(", "put(", "delete(", "patch(", "any(", "on(", "routing::"];
                    assert!(
                        !routing.iter().any(|r| args.contains(r)),
                        "{}: `{call}` whose path is not a literal: use `routes!` with #[utoipa::path]",
                        at(i)
                    );
                    continue;
                };
                if NOT_API.iter().any(|p| path == *p || path.starts_with(&format!("{p}/"))) {
                    continue;
                }
                assert_eq!(
                    call,
                    ".route(",
                    "{}: `{call}\"{path}\"` serves paths the document cannot list",
                    at(i)
                );
                let methods: Vec<String> = ["get", "post", "put", "delete", "patch"]
                    .into_iter()
                    .filter(|m| {
                        args.match_indices(&format!("{m}("))
                            .any(|(j, _)| !args[..j].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
                    })
                    .map(str::to_uppercase)
                    .collect();
                assert!(!methods.is_empty(), "{}: cannot tell the methods of `.route(\"{path}\", …)`", at(i));
                for method in methods {
                    assert!(
                        documented.contains(&(method.clone(), path.to_owned())),
                        "{}: {method} {path} is served but not in the OpenAPI document: declare it with \
                         `routes!` and a #[utoipa::path] on its handler",
                        at(i)
                    );
                }
            }
        }
    }
    for (name, at) in &handlers_in_routes {
        assert!(annotated_fns.contains(name), "{at}: routes!({name}) names no #[utoipa::path] handler found");
    }
    // Every annotated operation is in the document (none declared and left out of the router
    // the document comes from), and the document has nothing that no handler declares.
    let missing: Vec<_> = annotated.difference(&documented).collect();
    assert!(missing.is_empty(), "annotated but not in the document (not in `routes()`?): {missing:?}");
    let undeclared: Vec<_> = documented.difference(&annotated).collect();
    assert!(undeclared.is_empty(), "in the document but declared by no handler: {undeclared:?}");
    assert!(annotated.len() >= 30, "the scan found too few operations: {annotated:?}");
}

// ---------------------------------------------------------------------------------------------
// Route coverage, at run time: every operation is served as the document says.

/// The shipped producer on a database and Redis of its own, with a tenant's and an operator's key.
struct Served {
    _db: TestDb,
    _queue: TestQueue,
    router: Router,
    tenant_key: String,
    operator_key: String,
}

impl Served {
    async fn new() -> Self {
        let db = TestDb::new(Backend::Postgres).await;
        let queue = TestQueue::new(|_| {}).await;
        let (_, tenant) =
            db.create_tenant(&TenantId::parse("acme").expect("tenant"), "Acme", None).await.expect("tenant");
        let (_, operator) =
            db.create_operator(&OperatorName::parse("ada").expect("name")).await.expect("operator");
        let args = [
            "serve",
            "--database-url",
            &db.url,
            "--redis-url",
            &queue.url,
            "--queue-prefix",
            &queue.prefix,
            "--listen",
            "127.0.0.1:0",
        ];
        let config = Config::try_parse_from(args).expect("flags");
        let app = Application::build(config, startup::builtin().expect("the shipped kinds"))
            .await
            .expect("build the producer");
        let router = app.router();
        let (tenant_key, operator_key) = (tenant.expose().to_owned(), operator.expose().to_owned());
        Self { _db: db, _queue: queue, router, tenant_key, operator_key }
    }

    /// `method uri` with `key`: status, headers' `content-type` and `www-authenticate`, body.
    async fn call(
        &self,
        method: &Method,
        uri: &str,
        key: Option<&str>,
    ) -> (StatusCode, BTreeMap<String, String>, Vec<u8>) {
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = [header::CONTENT_TYPE, header::WWW_AUTHENTICATE]
            .into_iter()
            .filter_map(|h| Some((h.to_string(), response.headers().get(&h)?.to_str().ok()?.to_owned())))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("body").to_vec();
        (status, headers, body)
    }
}

/// `path` with each `{parameter}` given a value of the right shape.
fn concrete(path: &str) -> String {
    let mut out = path.to_owned();
    for (param, value) in [
        ("{job_id}", "job_0123456789abcdef0123456789abcdef"),
        ("{ticket_id}", "T-1"),
        ("{queue}", "triage"),
        ("{kind}", "triage"),
        ("{tenant}", "acme"),
        ("{id}", "1-0"),
    ] {
        out = out.replace(param, value);
    }
    assert!(!out.contains('{'), "a parameter with no sample value: {path}");
    out
}

/// Whether a response is the router's fallback (no route has the path) rather than a handler's.
fn fallback(status: StatusCode, body: &[u8]) -> bool {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && problem["detail"] == "route not found")
}

#[tokio::test]
async fn every_operation_in_the_document_is_served_as_it_says() {
    let served = Served::new().await;
    let (status, headers, body) = served.call(&Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").map(String::as_str), Some("application/json"));
    assert!(
        body == shipped().into_bytes(),
        "GET /openapi.json serves another document than `docs/openapi.json`'s"
    );
    // The router's fallbacks are what the checks below tell apart from a handler's answer.
    let (status, _, body) = served.call(&Method::GET, "/v1/nowhere", Some(&served.tenant_key)).await;
    assert!(fallback(status, &body), "{status}");
    let (status, _, body) = served.call(&Method::DELETE, "/v1/jobs", Some(&served.tenant_key)).await;
    assert!(fallback(status, &body), "{status}");

    let doc: Value = serde_json::from_str(&shipped()).expect("JSON");
    let all = operations(&doc);
    assert!(all.len() >= 30, "{all:?}");
    for (method, path) in &all {
        let op = &doc["paths"][path][method.to_lowercase()];
        let listed = |status: StatusCode| op["responses"].get(status.as_str()).is_some();
        let uri = concrete(path);
        let m = Method::from_bytes(method.as_bytes()).expect("a method");
        let scheme = op["security"][0].as_object().and_then(|s| s.keys().next()).map(String::as_str);
        let what = format!("{method} {path}");
        match scheme {
            Some(scheme) => {
                // No key: 401, as documented.
                let (status, headers, _) = served.call(&m, &uri, None).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a key");
                assert_eq!(headers.get("www-authenticate").map(String::as_str), Some("Bearer"), "{what}");
                assert!(listed(status), "{what}: answers 401, which the document does not list");
                let (key, other) = match scheme {
                    "tenant_key" => (&served.tenant_key, None),
                    "operator_key" => (&served.operator_key, Some(&served.tenant_key)),
                    other => panic!("{what}: unknown security scheme {other}"),
                };
                // A tenant's key on the operator API: 403, as documented.
                if let Some(tenant_key) = other {
                    let (status, _, _) = served.call(&m, &uri, Some(tenant_key)).await;
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a tenant's key");
                    assert!(listed(status), "{what}: answers 403, which the document does not list");
                }
                // The right key: a handler answers (not the fallbacks), with a status it lists.
                let (status, _, body) = served.call(&m, &uri, Some(key)).await;
                assert!(!fallback(status, &body), "{what} is in the document but not served ({status})");
                assert!(
                    !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                    "{what} refused its documented key ({status})"
                );
                assert!(
                    listed(status),
                    "{what} answered {status}, which the document does not list: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            None => {
                let (status, _, body) = served.call(&m, &uri, None).await;
                assert!(!fallback(status, &body), "{what} is in the document but not served ({status})");
                assert!(status.is_success(), "{what} without a key: {status}");
                assert!(listed(status), "{what} answered {status}, which the document does not list");
            }
        }
    }
    // A method the document does not list for a path is not served there.
    let paths: BTreeSet<&String> = all.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if all.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let key = if path.starts_with("/admin/") { &served.operator_key } else { &served.tenant_key };
            let m = Method::from_bytes(method.as_bytes()).expect("a method");
            let (status, _, _) = served.call(&m, &concrete(path), Some(key)).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is served but not documented"
            );
        }
    }
}
