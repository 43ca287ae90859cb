//! Unit tests of [`super`].
use super::*;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("valid tenant")
}
fn ticket(s: &str) -> TicketId {
    TicketId::parse(s).expect("valid ticket")
}

#[test]
fn tenant_and_ticket_validation_table() {
    let long_tenant = "a".repeat(MAX_TENANT_ID_LEN + 1);
    let long_ticket = "t".repeat(MAX_TICKET_ID_LEN + 1);
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("tenant", "acme", None),
        ("tenant", "acme-eu_1.prod:x", None),
        ("tenant", "", Some("tenant id must not be empty")),
        ("tenant", &long_tenant, Some("tenant id is 65 characters long; at most 64 are allowed")),
        ("tenant", "acme corp", Some("tenant id contains ' ' at position 4")),
        ("tenant", "-acme", Some("tenant id contains '-' at position 0")),
        ("tenant", "acmé", Some("tenant id contains 'é' at position 3")),
        ("tenant", "a/b", Some("'/' at position 1")),
        ("ticket", "SUP-1042", None),
        ("ticket", &"t".repeat(MAX_TICKET_ID_LEN), None),
        ("ticket", &long_ticket, Some("ticket id is 129 characters long")),
        ("ticket", "x\ny", Some("ticket id contains '\\n' at position 1")),
        ("ticket", "{triage}", Some("'{' at position 0")),
    ];
    for (kind, input, want) in cases {
        let got = match *kind {
            "tenant" => TenantId::parse(*input).map(|_| ()),
            _ => TicketId::parse(*input).map(|_| ()),
        };
        match (want, got) {
            (None, Ok(())) => {}
            (Some(w), Err(e)) => {
                assert!(e.to_string().contains(w), "{kind} {input:?}: {e} lacks {w:?}")
            }
            (w, g) => panic!("{kind} {input:?}: want {w:?}, got {g:?}"),
        }
    }
}

#[test]
fn idempotency_key_validation_table() {
    let cases: &[(&str, bool)] = &[
        ("abc", true),
        ("550e8400-e29b-41d4-a716-446655440000", true),
        ("!~{}[]", true),
        ("", false),
        ("with space", false),
        ("tab\t", false),
        ("ünïcode", false),
        (&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN), true),
        (&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1), false),
    ];
    for (input, ok) in cases {
        assert_eq!(IdempotencyKey::parse(*input).is_ok(), *ok, "{input:?}");
    }
}

/// The v1 ticket derivation, as the triage kind keeps it.
fn v1_ticket(tenant: &TenantId, ticket: &TicketId, revision: u64) -> JobId {
    JobId::from_fields(
        "longhaul/job/v1/ticket",
        &[tenant.as_str().as_bytes(), ticket.as_str().as_bytes(), &revision.to_le_bytes()],
    )
}

fn derived(key: &str) -> crate::kind::JobKey {
    crate::kind::JobKey::Derived(key.to_owned())
}

#[test]
fn job_ids_are_stable_and_distinct() {
    let a = JobId::derive(&tenant("acme"), "triage", &derived("T-1"));
    assert_eq!(a, JobId::derive(&tenant("acme"), "triage", &derived("T-1")));
    assert_eq!(JobId::parse(a.as_str()), Ok(a.clone()));
    let key = IdempotencyKey::parse("T-1").expect("key");
    let others = [
        JobId::derive(&tenant("acme"), "triage", &derived("T-2")),
        JobId::derive(&tenant("acme"), "summarize", &derived("T-1")),
        JobId::derive(&tenant("acme2"), "triage", &derived("T-1")),
        // Field boundaries matter: ("acm", "etriage") must not collide with ("acme", "triage").
        JobId::derive(&tenant("acm"), "etriage", &derived("T-1")),
        // A client key and a derived key of the same text are different jobs.
        JobId::derive(&tenant("acme"), "triage", &crate::kind::JobKey::Client(key.clone())),
        JobId::derive(&tenant("acme"), "triage", &crate::kind::JobKey::Generated("T-1".into())),
        JobId::for_idempotency_key(&tenant("acme"), &key),
        v1_ticket(&tenant("acme"), &ticket("T-1"), 1),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(&a, other, "collides with #{i}");
    }
}

#[test]
fn job_id_format_is_pinned() {
    // Regression pin: these values must never change within the v1 tag (triage keeps them).
    let id = v1_ticket(&tenant("acme"), &ticket("SUP-1"), 1);
    assert_eq!(id.as_str(), PINNED_JOB_ID);
    let op = OperationId::derive(&id, "apply", "webhook");
    assert_eq!(op.as_str(), PINNED_OP_ID);
}

// Computed independently from the documented format (Python hashlib), not copied from this code.
const PINNED_JOB_ID: &str = "job_db718bad4249ee9f433bba3033392195";
const PINNED_OP_ID: &str = "op_aa9a90c0e481ea75098bfd23e71841e0";

#[test]
fn derived_id_parse_table() {
    let cases: &[(&str, bool)] = &[
        ("job_0123456789abcdef0123456789abcdef", true),
        ("job_0123456789ABCDEF0123456789abcdef", false),
        ("job_0123456789abcdef0123456789abcde", false),
        ("op_0123456789abcdef0123456789abcdef", false),
        ("", false),
        ("job_", false),
    ];
    for (input, ok) in cases {
        assert_eq!(JobId::parse(*input).is_ok(), *ok, "{input:?}");
    }
    let err = JobId::parse("nope").expect_err("malformed");
    assert_eq!(
        err.to_string(),
        "\"nope\" is not a job id: expected \"job_\" followed by 32 lowercase hex digits"
    );
}

#[test]
fn serde_validates_on_the_way_in() {
    let ok: TenantId = serde_json::from_str("\"acme\"").expect("valid");
    assert_eq!(ok.as_str(), "acme");
    let err = serde_json::from_str::<TenantId>("\"a b\"").expect_err("invalid");
    assert!(err.to_string().contains("tenant id contains ' '"), "{err}");
    let err = serde_json::from_str::<JobId>("\"job_x\"").expect_err("invalid");
    assert!(err.to_string().contains("not a job id"), "{err}");
}
