//! The kind: options, validation errors naming the field, derived keys and job ids.

use std::time::Duration;

use longhaul_core::job::Registry;
use longhaul_core::kind::{JobKey, JobKind, Prepared};
use longhaul_core::{IdempotencyKey, InputError, TenantId};
use longhaul_summarize::Summarize;
use longhaul_summarize::kind::{MAX_CHUNKS, MAX_TEXT_BYTES};
use serde_json::{Value, json};

fn prepare(input: Value) -> Result<Prepared, InputError> {
    let registry = Registry::new().kind::<Summarize>().expect("registry");
    registry.prepare(&TenantId::parse("acme").expect("tenant"), "summarize", input, None, || "random".into())
}

#[test]
fn the_kind_declares_its_stages_queue_and_limits() {
    let options = Summarize::options();
    assert_eq!(Summarize::NAME, "summarize");
    assert_eq!(options.queue, "summarize");
    let stages: Vec<_> = options.stages.iter().map(|s| (s.name, s.weight)).collect();
    assert_eq!(stages, [("split", 1), ("summarize", 8), ("combine", 1), ("deliver", 1)]);
    assert_eq!(options.stage_timeout, Some(Duration::from_secs(300)));
    assert_eq!(options.deadline, Some(Duration::from_secs(3600)));
    assert!(options.max_attempts.is_some_and(|n| n > 1));
    assert_eq!(options.stage_span(1), (9, 81), "summarizing is most of the progress bar");
}

#[test]
fn a_valid_input_is_prepared_with_its_defaults_left_out() {
    let prepared = prepare(json!({"document_id": "doc-1", "text": "Some text."})).expect("valid");
    assert_eq!(prepared.kind, "summarize");
    assert_eq!(prepared.queue, "summarize");
    assert_eq!(prepared.input, json!({"document_id": "doc-1", "text": "Some text."}));
    let full = json!({
        "document_id": "a.b:c_d-9",
        "text": "Some text.",
        "chunk_chars": 500,
    });
    assert_eq!(prepare(full.clone()).expect("valid").input, full);
}

#[test]
fn a_bad_input_names_the_field() {
    let text = "Some text.";
    let long_id = "d".repeat(129);
    let huge = "a".repeat(MAX_TEXT_BYTES + 1);
    let many = "Short paragraph here.\n\n".repeat(MAX_CHUNKS * 10);
    let cases = [
        (json!({"document_id": "d", "text": ""}), "input.text", "empty"),
        (json!({"document_id": "d", "text": " \n\t "}), "input.text", "blank"),
        (json!({"document_id": "d", "text": huge}), "input.text", "bytes"),
        (json!({"document_id": "d", "text": "a\u{0}b"}), "input.text", "NUL"),
        (json!({"document_id": "d", "text": 5}), "input.text", "invalid type"),
        (json!({"document_id": "d", "text": many, "chunk_chars": 200}), "input.text", "chunk_chars"),
        (json!({"document_id": "", "text": text}), "input.document_id", "1–128"),
        (json!({"document_id": long_id, "text": text}), "input.document_id", "got 129"),
        (json!({"document_id": "has space", "text": text}), "input.document_id", "' '"),
        (json!({"document_id": "-lead", "text": text}), "input.document_id", "'-'"),
        (json!({"document_id": 7, "text": text}), "input.document_id", "invalid type"),
        (json!({"document_id": "d", "text": text, "chunk_chars": 10}), "input.chunk_chars", "200–16000"),
        (
            json!({"document_id": "d", "text": text, "chunk_chars": 100_000}),
            "input.chunk_chars",
            "got 100000",
        ),
        (json!({"document_id": "d", "text": text, "chunk_chars": -1}), "input.chunk_chars", "invalid value"),
        // Where results go is the tenant's configuration, never the submission's.
        (
            json!({"document_id": "d", "text": text, "webhook_url": "https://hooks.example.com/x"}),
            "input.webhook_url",
            "unknown field",
        ),
        (
            json!({"document_id": "d", "text": text, "webhook_url": "http://169.254.169.254/latest"}),
            "input.webhook_url",
            "unknown field",
        ),
        (json!({"document_id": "d", "text": text, "extra": 1}), "input.extra", "unknown field"),
        (json!({"document_id": "d"}), "input", "missing field `text`"),
        (json!("just text"), "input", "invalid type"),
    ];
    for (input, field, message) in cases {
        let err = prepare(input.clone()).expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert!(err.message.contains(message), "{field}: {:?} lacks {message:?}", err.message);
    }
}

#[test]
fn the_key_is_the_document_and_its_text() {
    let id = |input: Value| prepare(input).expect("valid").job_id;
    let base = id(json!({"document_id": "doc-1", "text": "Version one."}));
    assert_eq!(id(json!({"document_id": "doc-1", "text": "Version one."})), base, "a resubmission");
    assert_eq!(
        id(json!({"document_id": "doc-1", "text": "Version one.", "chunk_chars": 900})),
        base,
        "the same text of the same document, chunked otherwise, is the same job"
    );
    assert_ne!(id(json!({"document_id": "doc-1", "text": "Version two."})), base, "an edit");
    assert_ne!(id(json!({"document_id": "doc-2", "text": "Version one."})), base, "another document");

    let prepared = prepare(json!({"document_id": "doc-1", "text": "Version one."})).expect("valid");
    let JobKey::Derived(key) = &prepared.key else { panic!("a derived key: {:?}", prepared.key) };
    let (doc, hash) = key.rsplit_once(':').expect("doc:hash");
    assert_eq!(doc, "doc-1");
    assert_eq!(hash.len(), 64);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));

    // A client's Idempotency-Key still wins.
    let registry = Registry::new().kind::<Summarize>().expect("registry");
    let client = registry
        .prepare(
            &TenantId::parse("acme").expect("tenant"),
            "summarize",
            json!({"document_id": "doc-1", "text": "Version one."}),
            Some(IdempotencyKey::parse("client-key").expect("key")),
            || "random".into(),
        )
        .expect("valid");
    assert_ne!(client.job_id, base);
}

#[test]
fn the_input_schema_states_the_bounds_validation_applies() {
    use longhaul_summarize::kind::{
        DEFAULT_CHUNK_CHARS, MAX_CHUNK_CHARS, MAX_DOCUMENT_ID_LEN, MIN_CHUNK_CHARS,
    };
    let schema = Summarize::input_schema();
    let properties = &schema["properties"];
    assert_eq!(schema["type"], "object", "{schema:#}");
    assert_eq!(schema["required"], json!(["document_id", "text"]), "{schema:#}");
    assert_eq!(schema["additionalProperties"], false, "{schema:#}");
    assert_eq!(properties["document_id"]["maxLength"], json!(MAX_DOCUMENT_ID_LEN), "{schema:#}");
    assert_eq!(properties["text"]["maxLength"], json!(MAX_TEXT_BYTES), "{schema:#}");
    assert_eq!(properties["chunk_chars"]["minimum"], json!(MIN_CHUNK_CHARS), "{schema:#}");
    assert_eq!(properties["chunk_chars"]["maximum"], json!(MAX_CHUNK_CHARS), "{schema:#}");
    assert_eq!(properties["chunk_chars"]["default"], json!(DEFAULT_CHUNK_CHARS), "{schema:#}");
    // What the schema allows at its edges, validation accepts.
    let edge =
        json!({"document_id": "d".repeat(MAX_DOCUMENT_ID_LEN), "text": "x", "chunk_chars": MIN_CHUNK_CHARS});
    assert!(prepare(edge).is_ok());
    assert!(prepare(json!({"document_id": "d", "text": "x", "chunk_chars": MAX_CHUNK_CHARS})).is_ok());
    let registry = Registry::new().kind::<Summarize>().expect("summarize");
    assert_eq!(registry.input_schema("summarize"), Some(&schema));
}
