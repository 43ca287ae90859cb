//! Unit tests of [`super`].
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;

struct Doc;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocInput {
    doc_id: String,
    chunks: Vec<String>,
}

impl JobKind for Doc {
    const NAME: &'static str = "doc";
    type Input = DocInput;
    type Output = String;
    fn options() -> KindOptions {
        const STAGES: &[Stage] = &[Stage::new("split", 1), Stage::new("work", 3)];
        KindOptions::new("docs", STAGES)
    }
    fn key(input: &DocInput) -> Option<String> {
        Some(input.doc_id.clone())
    }
    fn validate(input: &DocInput) -> Result<(), InputError> {
        match input.chunks.iter().position(String::is_empty) {
            Some(i) => Err(InputError::new(format!("chunks[{i}]"), "must not be empty")),
            None => Ok(()),
        }
    }
}

fn tenant() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

#[test]
fn a_bad_input_names_the_field() {
    let cases = [
        (json!({"doc_id": 7, "chunks": []}), "input.doc_id"),
        (json!({"doc_id": "d", "chunks": ["a", 3]}), "input.chunks[1]"),
        (json!({"doc_id": "d", "chunks": ["a", ""]}), "input.chunks[1]"),
        (json!({"doc_id": "d"}), "input"),
        (json!({"doc_id": "d", "chunks": [], "extra": 1}), "input.extra"),
        (json!("text"), "input"),
    ];
    for (input, field) in cases {
        let err = prepare::<Doc>(&tenant(), input.clone(), None, || "r".into()).expect_err("rejected");
        assert_eq!(err.field, field, "{input}: {err}");
        assert!(!err.message.is_empty());
    }
}

#[test]
fn the_key_is_the_clients_then_the_kinds_then_generated() {
    let input = json!({"doc_id": "d-1", "chunks": ["a"]});
    let derived = prepare::<Doc>(&tenant(), input.clone(), None, || "r".into()).expect("ok");
    assert_eq!(derived.key, JobKey::Derived("d-1".into()));
    assert_eq!(derived.queue, "docs");
    assert_eq!(derived.job_id, JobId::derive(&tenant(), "doc", &JobKey::Derived("d-1".into())));
    let again = prepare::<Doc>(&tenant(), input.clone(), None, || "other".into()).expect("ok");
    assert_eq!(again.job_id, derived.job_id, "a derived key is stable");

    let client = IdempotencyKey::parse("k-1").expect("key");
    let keyed = prepare::<Doc>(&tenant(), input, Some(client.clone()), || "r".into()).expect("ok");
    assert_eq!(keyed.key, JobKey::Client(client));
    assert_ne!(keyed.job_id, derived.job_id);

    struct Plain;
    impl JobKind for Plain {
        const NAME: &'static str = "plain";
        type Input = serde_json::Value;
        type Output = serde_json::Value;
        fn options() -> KindOptions {
            KindOptions::new("plain", &[Stage { name: "only", weight: 1 }])
        }
    }
    let a = prepare::<Plain>(&tenant(), json!({}), None, || "r-1".into()).expect("ok");
    let b = prepare::<Plain>(&tenant(), json!({}), None, || "r-2".into()).expect("ok");
    assert_eq!(a.key, JobKey::Generated("r-1".into()));
    assert_ne!(a.job_id, b.job_id, "without a key every submission is a job of its own");
}

#[test]
fn stage_spans_follow_the_weights() {
    let options = Doc::options();
    assert_eq!(options.stage_span(0), (0, 25));
    assert_eq!(options.stage_span(1), (25, 100));
    const EQUAL: &[Stage] = &[Stage::new("a", 1), Stage::new("b", 1), Stage::new("c", 1)];
    let options = KindOptions::new("q", EQUAL);
    assert_eq!(options.stage_span(0), (0, 33));
    assert_eq!(options.stage_span(1), (33, 66));
    assert_eq!(options.stage_span(2), (66, 100));
}

#[test]
fn kind_names_use_the_safe_set() {
    assert!(validate_kind_name("summarize").is_ok());
    assert!(validate_kind_name("").is_err());
    assert!(validate_kind_name("has space").is_err());
    assert!(validate_kind_name(&"k".repeat(65)).is_err());
}

/// An input with a nested type and an id: both written in place by [`schema_of`].
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Order {
    /// Who ordered.
    tenant: TenantId,
    /// What.
    lines: Vec<Line>,
}

/// One line of an order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct Line {
    /// How many.
    #[schema(minimum = 1)]
    count: u32,
}

/// One stage, for the kinds below.
const ONE_STAGE: &[Stage] = &[Stage::new("all", 1)];

struct Orders;

impl JobKind for Orders {
    const NAME: &'static str = "orders";
    type Input = Order;
    type Output = ();
    fn options() -> KindOptions {
        KindOptions::new("orders", ONE_STAGE)
    }
    fn input_schema() -> serde_json::Value {
        schema_of::<Order>()
    }
}

/// Every `$ref` in `value`.
fn refs(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", serde_json::Value::String(r)) => vec![r.clone()],
                _ => refs(v),
            })
            .collect(),
        serde_json::Value::Array(items) => items.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_schema_of_a_type_stands_alone() {
    let schema = Orders::input_schema();
    assert!(refs(&schema).is_empty(), "{schema:#}");
    assert_eq!(schema["type"], "object", "{schema:#}");
    assert_eq!(schema["required"], json!(["tenant", "lines"]), "{schema:#}");
    assert_eq!(schema["additionalProperties"], false, "{schema:#}");
    // The id's own schema, in place, under the field's description.
    assert_eq!(schema["properties"]["tenant"]["pattern"], "^[A-Za-z0-9][A-Za-z0-9._:-]*$", "{schema:#}");
    assert_eq!(schema["properties"]["tenant"]["maxLength"], 64, "{schema:#}");
    assert_eq!(schema["properties"]["lines"]["items"]["properties"]["count"]["minimum"], 1, "{schema:#}");
}

#[test]
fn a_kind_without_a_schema_shows_any_input() {
    let schema = Doc::input_schema();
    assert_eq!(
        schema.as_object().map(|m| m.keys().collect::<Vec<_>>()),
        Some(vec![&"description".to_owned()])
    );
    assert!(schema["description"].as_str().is_some_and(|d| d.contains("`doc`")), "{schema}");
    let registry = crate::Registry::new().kind::<Doc>().expect("doc").kind::<Orders>().expect("orders");
    assert_eq!(registry.input_schema("doc"), Some(&schema));
    assert_eq!(registry.input_schema("orders"), Some(&schema_of::<Order>()));
    assert_eq!(registry.input_schema("export"), None);
}

#[test]
fn a_kind_whose_schema_is_not_an_object_or_refers_out_is_refused() {
    struct Bare;
    impl JobKind for Bare {
        const NAME: &'static str = "bare";
        type Input = serde_json::Value;
        type Output = ();
        fn options() -> KindOptions {
            KindOptions::new("bare", ONE_STAGE)
        }
        fn input_schema() -> serde_json::Value {
            json!(true)
        }
    }
    struct Linked;
    impl JobKind for Linked {
        const NAME: &'static str = "linked";
        type Input = serde_json::Value;
        type Output = ();
        fn options() -> KindOptions {
            KindOptions::new("linked", ONE_STAGE)
        }
        fn input_schema() -> serde_json::Value {
            json!({"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}})
        }
    }
    let bare = crate::Registry::new().kind::<Bare>().expect_err("a boolean schema");
    assert!(bare.to_string().contains("input_schema: must be a JSON object"), "{bare}");
    let linked = crate::Registry::new().kind::<Linked>().expect_err("a $ref");
    assert!(linked.to_string().contains("#/components/schemas/A"), "{linked}");
}
