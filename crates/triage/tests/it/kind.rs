//! The `Triage` kind as the producer prepares it: the job ids triage had before kinds existed,
//! its key and queue, and inputs rejected naming the field.

use longhaul_core::job::Registry;
use longhaul_core::kind::{JobKey, JobKind, Prepared};
use longhaul_core::{IdempotencyKey, InputError, JobId, TenantId, TicketId};
use longhaul_triage::{Triage, job_id_for_ticket};
use serde_json::{Value, json};

/// The id of revision 1 of ticket `SUP-1` of tenant `acme` under the scheme before kinds existed,
/// pinned in `longhaul-core` (computed independently from the documented format).
const PINNED_JOB_ID: &str = "job_db718bad4249ee9f433bba3033392195";

fn acme() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

/// Prepares `input` as a `triage` submission of `acme`, through a registry as the producer does.
fn prepare(input: Value, key: Option<&str>) -> Result<Prepared, InputError> {
    let registry = Registry::new().kind::<Triage>().expect("registry");
    let key = key.map(|k| IdempotencyKey::parse(k).expect("idempotency key"));
    registry.prepare(&acme(), "triage", input, key, || "random-key".into())
}

#[test]
fn a_ticket_revision_keeps_the_job_id_it_had_before_kinds() {
    let prepared = prepare(json!({"ticket_id": "SUP-1", "revision": 1}), None).expect("valid");
    let ticket = TicketId::parse("SUP-1").expect("ticket");
    assert_eq!(prepared.job_id, job_id_for_ticket(&acme(), &ticket, 1));
    assert_eq!(prepared.job_id.as_str(), PINNED_JOB_ID);
    assert_eq!(prepared.key, JobKey::Derived("SUP-1@1".into()), "the key is derived, not random");
    assert_eq!((prepared.kind, prepared.queue), ("triage", "triage"));
    assert_eq!(prepared.input, json!({"ticket_id": "SUP-1", "revision": 1}));

    // Resubmitting the revision is the same job; the next revision is another.
    let again = prepare(json!({"ticket_id": "SUP-1", "revision": 1}), None).expect("valid");
    assert_eq!(again.job_id, prepared.job_id);
    let next = prepare(json!({"ticket_id": "SUP-1", "revision": 2}), None).expect("valid");
    assert_eq!(next.job_id, job_id_for_ticket(&acme(), &ticket, 2));
    assert_ne!(next.job_id, prepared.job_id);
}

#[test]
fn a_client_key_keeps_the_job_id_it_had_before_kinds() {
    let prepared = prepare(json!({"ticket_id": "SUP-1", "revision": 1}), Some("req-42")).expect("valid");
    let key = IdempotencyKey::parse("req-42").expect("key");
    assert_eq!(prepared.job_id, JobId::for_idempotency_key(&acme(), &key));
    assert_eq!(prepared.key, JobKey::Client(key));
    assert_ne!(prepared.job_id.as_str(), PINNED_JOB_ID, "the client's key wins over the derived one");
    // The key names the job whatever the input.
    let other = prepare(json!({"ticket_id": "SUP-2", "revision": 3}), Some("req-42")).expect("valid");
    assert_eq!(other.job_id, prepared.job_id);
}

#[test]
fn a_bad_input_names_the_field() {
    let cases = [
        (json!({"ticket_id": "SUP-1", "revision": 0}), "input.revision", "at least 1"),
        (json!({"ticket_id": "SUP-1", "revision": -1}), "input.revision", "invalid value"),
        (json!({"ticket_id": "SUP-1"}), "input", "missing field `revision`"),
        (json!({"ticket_id": "has space", "revision": 1}), "input.ticket_id", "' '"),
        (json!({"ticket_id": "SUP-1", "revision": 1, "extra": true}), "input.extra", "unknown field"),
    ];
    for (input, field, message) in cases {
        let err = prepare(input.clone(), None).expect_err("rejected");
        assert_eq!(err.field, field, "{input}: {err}");
        assert!(err.message.contains(message), "{input}: {err}");
    }
}

#[test]
fn the_kind_declares_its_queue_and_stages() {
    let options = Triage::options();
    assert_eq!((Triage::NAME, options.queue), ("triage", "triage"));
    let stages: Vec<_> = options.stages.iter().map(|s| s.name).collect();
    assert_eq!(stages, ["load", "classify", "apply"]);
    let registry = Registry::new().kind::<Triage>().expect("registry");
    assert_eq!(registry.queues().into_iter().collect::<Vec<_>>(), ["triage"]);
    let err = registry
        .prepare(&acme(), "triage-v2", json!({"ticket_id": "SUP-1", "revision": 1}), None, || "r".into())
        .expect_err("unknown kind");
    assert_eq!(err.field, "kind");
}

#[test]
fn the_input_schema_is_the_ticket_and_its_revision() {
    let schema = Triage::input_schema();
    assert_eq!(schema["type"], "object", "{schema:#}");
    assert_eq!(schema["required"], json!(["ticket_id", "revision"]), "{schema:#}");
    assert_eq!(schema["additionalProperties"], false, "{schema:#}");
    let ticket = &schema["properties"]["ticket_id"];
    assert_eq!(ticket["type"], "string", "{schema:#}");
    assert_eq!(ticket["maxLength"], json!(longhaul_core::ids::MAX_TICKET_ID_LEN), "{schema:#}");
    assert_eq!(schema["properties"]["revision"]["minimum"], 1, "{schema:#}");
    assert!(!schema.to_string().contains("$ref"), "{schema:#}");
    let registry = Registry::new().kind::<Triage>().expect("triage");
    assert_eq!(registry.input_schema("triage"), Some(&schema));
}
