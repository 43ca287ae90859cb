//! Classification: the [`Classifier`] trait, the [`Classification`] schema every provider must
//! produce, and the built-in deterministic [`RuleClassifier`].

use std::future::Future;

use longhaul_core::{FailureCase, JobError};

use crate::TicketView;
use serde::{Deserialize, Serialize};

/// Ticket categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Charges, refunds, invoices.
    Billing,
    /// Something is broken.
    Bug,
    /// Login, passwords, access.
    Account,
    /// A wish.
    FeatureRequest,
    /// The service is down.
    Outage,
    /// Anything else.
    General,
}

/// Ticket priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Can wait.
    Low,
    /// The default.
    Normal,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

/// Most labels a classification may carry.
pub const MAX_LABELS: usize = 10;
/// Longest label, in characters.
pub const MAX_LABEL_LEN: usize = 40;
/// Longest summary, in characters.
pub const MAX_SUMMARY_LEN: usize = 300;

/// The result of classifying a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    /// The category.
    pub category: Category,
    /// The priority.
    pub priority: Priority,
    /// Short labels, lowercase.
    pub labels: Vec<String>,
    /// A one-line summary.
    pub summary: String,
}

impl Classification {
    /// Checks the limits a provider's answer must respect. No text may contain NUL: application
    /// storage on PostgreSQL cannot hold it, so such an answer could never be applied.
    ///
    /// # Errors
    /// A message naming the violated limit.
    pub fn validate(&self) -> Result<(), String> {
        if self.summary.contains('\0') || self.labels.iter().any(|l| l.contains('\0')) {
            return Err("text must not contain NUL (\\u0000)".into());
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!("{} labels; at most {MAX_LABELS} are allowed", self.labels.len()));
        }
        if let Some(l) = self.labels.iter().find(|l| l.is_empty() || l.chars().count() > MAX_LABEL_LEN) {
            return Err(format!("label {l:?} must be 1–{MAX_LABEL_LEN} characters"));
        }
        let len = self.summary.chars().count();
        if len == 0 || len > MAX_SUMMARY_LEN || self.summary.contains('\n') {
            return Err(format!("summary must be one line of 1–{MAX_SUMMARY_LEN} characters, got {len}"));
        }
        Ok(())
    }
}

/// Something that classifies tickets.
pub trait Classifier: Send + Sync {
    /// Classifies `ticket`.
    ///
    /// # Errors
    /// A [`JobError`] classified per the retry table (timeouts retryable, bad answers invalid).
    fn classify(&self, ticket: &TicketView) -> impl Future<Output = Result<Classification, JobError>> + Send;
}

impl<T: Classifier + ?Sized> Classifier for &T {
    fn classify(&self, ticket: &TicketView) -> impl Future<Output = Result<Classification, JobError>> + Send {
        (**self).classify(ticket)
    }
}

impl<T: Classifier + ?Sized> Classifier for std::sync::Arc<T> {
    fn classify(&self, ticket: &TicketView) -> impl Future<Output = Result<Classification, JobError>> + Send {
        (**self).classify(ticket)
    }
}

/// The built-in classifier: keyword rules, deterministic and offline.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleClassifier;

const CATEGORY_RULES: &[(Category, &[&str])] = &[
    (Category::Outage, &["outage", "is down", "site down", "unavailable", "503", "not loading"]),
    (
        Category::Billing,
        &["refund", "charged", "invoice", "payment", "billing", "subscription", "credit card"],
    ),
    (Category::Account, &["password", "log in", "login", "sign in", "2fa", "locked out", "account access"]),
    (
        Category::Bug,
        &["error", "crash", "bug", "broken", "exception", "doesn't work", "does not work", "500"],
    ),
    (Category::FeatureRequest, &["feature", "would be nice", "suggestion", "could you add", "wish"]),
];

const URGENT: &[&str] = &["urgent", "asap", "outage", "data loss", "production down", "is down", "security"];
const HIGH: &[&str] =
    &["crash", "charged twice", "double charge", "locked out", "cannot", "can't", "blocked"];
const LOW: &[&str] = &["feature", "suggestion", "would be nice", "question", "wish"];

const LABEL_RULES: &[(&str, &str)] = &[
    ("refund", "refund"),
    ("charged twice", "duplicate-charge"),
    ("double charge", "duplicate-charge"),
    ("invoice", "invoice"),
    ("password", "password"),
    ("2fa", "2fa"),
    ("mobile", "mobile"),
    ("ios", "mobile"),
    ("android", "mobile"),
    ("api", "api"),
    ("export", "export"),
    ("slow", "performance"),
    ("timeout", "performance"),
];

impl RuleClassifier {
    /// Classifies `ticket` by its words. Pure: the same ticket always gets the same answer.
    pub fn classify_now(ticket: &TicketView) -> Classification {
        let text = format!("{} {}", ticket.subject, ticket.body).to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
        let category = CATEGORY_RULES
            .iter()
            .find(|(_, words)| has(words))
            .map_or(Category::General, |(category, _)| *category);
        let priority = if has(URGENT) {
            Priority::Urgent
        } else if has(HIGH) {
            Priority::High
        } else if has(LOW) {
            Priority::Low
        } else {
            Priority::Normal
        };
        let mut labels: Vec<String> = Vec::new();
        for (word, label) in LABEL_RULES {
            if text.contains(word) && !labels.iter().any(|l| l == label) {
                labels.push((*label).to_owned());
            }
        }
        labels.truncate(MAX_LABELS);
        Classification { category, priority, labels, summary: summarize(ticket) }
    }
}

/// The subject, or the body's first sentence, on one line, cut to the summary limit.
fn summarize(ticket: &TicketView) -> String {
    let source =
        if ticket.subject.trim().is_empty() { ticket.body.as_str() } else { ticket.subject.as_str() };
    let first = source
        .split(['.', '!', '?', '\n'])
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("(empty ticket)");
    let one_line: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        let cut: String = one_line.chars().take(117).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

impl Classifier for RuleClassifier {
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        Ok(Self::classify_now(ticket))
    }
}

/// Parses and validates a provider's JSON answer.
///
/// # Errors
/// An invalid-class [`JobError`] saying what is wrong with the answer.
pub fn parse_classification(content: &str) -> Result<Classification, JobError> {
    let rejected = |why: String| JobError::new(FailureCase::ProviderRejected, why);
    let c: Classification = serde_json::from_str(content.trim())
        .map_err(|e| rejected(format!("provider answer is not a valid classification: {e}")))?;
    c.validate().map_err(|e| rejected(format!("provider answer is out of bounds: {e}")))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use longhaul_core::{TenantId, TicketId};

    use super::*;

    fn ticket(subject: &str, body: &str) -> TicketView {
        TicketView {
            tenant_id: TenantId::parse("acme").expect("tenant"),
            ticket_id: TicketId::parse("T-1").expect("ticket"),
            revision: 1,
            subject: subject.into(),
            body: body.into(),
            webhook_url: None,
        }
    }

    #[test]
    fn rule_table() {
        let cases = [
            (
                "Refund please",
                "I was charged twice for my subscription",
                Category::Billing,
                Priority::High,
                vec!["refund", "duplicate-charge"],
            ),
            (
                "Site is down",
                "Production down since 9am, all users affected",
                Category::Outage,
                Priority::Urgent,
                vec![],
            ),
            ("Can't log in", "Locked out after 2fa reset", Category::Account, Priority::High, vec!["2fa"]),
            (
                "App crash",
                "The iOS app crashes on export",
                Category::Bug,
                Priority::High,
                vec!["mobile", "export"],
            ),
            (
                "Feature idea",
                "It would be nice to have dark mode",
                Category::FeatureRequest,
                Priority::Low,
                vec![],
            ),
            ("Hello", "Just saying thanks", Category::General, Priority::Normal, vec![]),
        ];
        for (subject, body, category, priority, labels) in cases {
            let c = RuleClassifier::classify_now(&ticket(subject, body));
            assert_eq!((c.category, c.priority), (category, priority), "{subject}");
            assert_eq!(c.labels, labels, "{subject}");
            assert_eq!(c.summary, subject);
            assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn summary_is_one_bounded_line() {
        let c = RuleClassifier::classify_now(&ticket("", "First   line\nsecond line. More."));
        assert_eq!(c.summary, "First line");
        let long = "word ".repeat(100);
        let c = RuleClassifier::classify_now(&ticket(&long, ""));
        assert_eq!(c.summary.chars().count(), 120);
        assert!(c.summary.ends_with("..."));
        assert_eq!(RuleClassifier::classify_now(&ticket(" ", " ")).summary, "(empty ticket)");
    }

    #[test]
    fn provider_answers_are_validated() {
        let ok = r#"{"category":"bug","priority":"high","labels":["api"],"summary":"API returns 500"}"#;
        assert_eq!(parse_classification(ok).expect("valid").category, Category::Bug);
        let cases = [
            ("not json", "not a valid classification"),
            (r#"{"category":"bug"}"#, "missing field"),
            (
                r#"{"category":"weird","priority":"high","labels":[],"summary":"s"}"#,
                "unknown variant `weird`",
            ),
            (
                r#"{"category":"bug","priority":"extreme","labels":[],"summary":"s"}"#,
                "unknown variant `extreme`",
            ),
            (r#"{"category":"bug","priority":"low","labels":[],"summary":""}"#, "summary must be one line"),
            (r#"{"category":"bug","priority":"low","labels":[""],"summary":"s"}"#, "label \"\" must be"),
            (
                r#"{"category":"bug","priority":"low","labels":[],"summary":"s","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"category":"bug","priority":"low","labels":[],"summary":"a\u0000b"}"#,
                "must not contain NUL",
            ),
            (
                r#"{"category":"bug","priority":"low","labels":["x\u0000"],"summary":"s"}"#,
                "must not contain NUL",
            ),
        ];
        for (input, want) in cases {
            let err = parse_classification(input).expect_err(input);
            assert_eq!(err.case, FailureCase::ProviderRejected);
            assert!(err.message.contains(want), "{input}: {}", err.message);
        }
        let many =
            format!(r#"{{"category":"bug","priority":"low","labels":{:?},"summary":"s"}}"#, vec!["x"; 11]);
        assert!(parse_classification(&many).expect_err("too many").message.contains("11 labels"));
    }
}
