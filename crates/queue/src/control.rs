//! [`Control`]: the limits and pauses admission enforces — the backlog window, per-tenant caps
//! and rates, per-kind rates, the queue's and the kinds' pauses. The database holds the truth;
//! the queue's `control` hash is its mirror, which workers replace whole
//! ([`Queue::set_control`]) and the admission scripts read. [`Queue::control`] reads it back.
//!
//! Hash fields: `ahead`, `cap`, `rate`, `cap:<tenant>`, `rate:<tenant>`, `krate:<kind>`, `paused`
//! (`1`), `paused:<kind>` (`1`). An absent hash is [`Control::default`]: no window, no limits,
//! nothing paused — every entry goes straight into the stream, as before admission existed.

use std::collections::{BTreeMap, BTreeSet};

use longhaul_core::TenantId;

use crate::{Queue, QueueError, scripts};

/// The limits and pauses of one queue.
///
/// A cap or rate of 0 means none. A tenant's own cap or rate overrides the default, so a tenant
/// entry of 0 lifts the default for that tenant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Control {
    /// The backlog window: admission keeps at most this many entries in the jobs stream that no
    /// worker has taken yet, so a burst waits in its wait lists, where the other tenants' entries
    /// can pass it. 0: no window (only caps, rates and pauses hold entries back; with none set,
    /// the queue is a plain FIFO).
    pub ahead: u32,
    /// Jobs of one tenant admitted and not finished, at most (`None` or 0: no cap).
    pub default_cap: Option<u32>,
    /// Starts per second of one tenant, at most (`None` or 0: no limit).
    pub default_rate: Option<f64>,
    /// Caps of single tenants, overriding [`Control::default_cap`].
    pub tenant_caps: BTreeMap<String, u32>,
    /// Start rates of single tenants, overriding [`Control::default_rate`].
    pub tenant_rates: BTreeMap<String, f64>,
    /// Start rates per kind, across tenants.
    pub kind_rates: BTreeMap<String, f64>,
    /// Whether the whole queue is paused: nothing is admitted, and workers fetch nothing.
    pub paused: bool,
    /// Kinds that are paused: their entries are not admitted (and a worker handed one defers it).
    pub paused_kinds: BTreeSet<String>,
}

/// A rate as the mirror stores it, if it is one: finite and not negative.
fn check_rate(setting: &'static str, name: Option<&str>, rate: f64) -> Result<(), QueueError> {
    if rate.is_finite() && rate >= 0.0 {
        return Ok(());
    }
    Err(QueueError::InvalidSetting {
        setting,
        expected: "a finite number of starts per second, 0 or more",
        got: match name {
            Some(name) => format!("{name}: {rate}"),
            None => rate.to_string(),
        },
    })
}

fn check_tenant(setting: &'static str, tenant: &str) -> Result<(), QueueError> {
    TenantId::parse(tenant).map(|_| ()).map_err(|e| QueueError::InvalidSetting {
        setting,
        expected: "valid tenant ids",
        got: e.to_string(),
    })
}

fn check_kind(setting: &'static str, kind: &str) -> Result<(), QueueError> {
    longhaul_core::kind::validate_kind_name(kind).map_err(|e| QueueError::InvalidSetting {
        setting,
        expected: "valid kind names",
        got: e,
    })
}

impl Control {
    /// The mirror's field/value pairs.
    ///
    /// # Errors
    /// [`QueueError::InvalidSetting`] naming the field of a rate that is negative or not finite,
    /// or of a tenant id or kind name that is not valid.
    pub(crate) fn to_fields(&self) -> Result<Vec<(String, String)>, QueueError> {
        let mut f = vec![("ahead".to_owned(), self.ahead.to_string())];
        if let Some(cap) = self.default_cap {
            f.push(("cap".into(), cap.to_string()));
        }
        if let Some(rate) = self.default_rate {
            check_rate("default_rate", None, rate)?;
            f.push(("rate".into(), rate.to_string()));
        }
        for (tenant, cap) in &self.tenant_caps {
            check_tenant("tenant_caps", tenant)?;
            f.push((format!("cap:{tenant}"), cap.to_string()));
        }
        for (tenant, rate) in &self.tenant_rates {
            check_tenant("tenant_rates", tenant)?;
            check_rate("tenant_rates", Some(tenant), *rate)?;
            f.push((format!("rate:{tenant}"), rate.to_string()));
        }
        for (kind, rate) in &self.kind_rates {
            check_kind("kind_rates", kind)?;
            check_rate("kind_rates", Some(kind), *rate)?;
            f.push((format!("krate:{kind}"), rate.to_string()));
        }
        if self.paused {
            f.push(("paused".into(), "1".into()));
        }
        for kind in &self.paused_kinds {
            check_kind("paused_kinds", kind)?;
            f.push((format!("paused:{kind}"), "1".into()));
        }
        Ok(f)
    }

    /// Reads the mirror's fields. Fields this version does not know are ignored.
    ///
    /// # Errors
    /// [`QueueError::Protocol`] naming a field whose value is not what it must be.
    pub(crate) fn from_fields(fields: &[(String, String)]) -> Result<Self, QueueError> {
        fn parse<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, QueueError> {
            value
                .parse()
                .map_err(|_| QueueError::Protocol(format!("control field {field:?} holds {value:?}")))
        }
        let mut c = Control::default();
        for (field, value) in fields {
            match field.split_once(':') {
                None => match field.as_str() {
                    "ahead" => c.ahead = parse(field, value)?,
                    "cap" => c.default_cap = Some(parse(field, value)?),
                    "rate" => c.default_rate = Some(parse(field, value)?),
                    "paused" => c.paused = value == "1",
                    _ => {}
                },
                Some(("cap", tenant)) => {
                    c.tenant_caps.insert(tenant.to_owned(), parse(field, value)?);
                }
                Some(("rate", tenant)) => {
                    c.tenant_rates.insert(tenant.to_owned(), parse(field, value)?);
                }
                Some(("krate", kind)) => {
                    c.kind_rates.insert(kind.to_owned(), parse(field, value)?);
                }
                Some(("paused", kind)) if value == "1" => {
                    c.paused_kinds.insert(kind.to_owned());
                }
                Some(_) => {}
            }
        }
        Ok(c)
    }
}

impl Queue {
    /// Replaces the queue's control mirror with `control`, atomically: admission sees the old
    /// limits or the new ones, never a mix. Workers call it with what the database holds.
    ///
    /// # Errors
    /// [`QueueError::InvalidSetting`] for a rate that is negative or not finite, or a tenant id or
    /// kind name that is not valid (nothing is written); otherwise when Redis cannot be reached
    /// in time.
    pub async fn set_control(&self, control: &Control) -> Result<(), QueueError> {
        let fields = control.to_fields()?;
        let mut inv = scripts::SET_CONTROL.prepare_invoke();
        inv.key(self.keys.control());
        for (k, v) in fields {
            inv.arg(k).arg(v);
        }
        let _: u64 = self.run(&inv).await?;
        Ok(())
    }

    /// The control mirror as admission reads it ([`Control::default`] when none was written).
    ///
    /// # Errors
    /// [`QueueError::Protocol`] for a field holding something else than its kind of value;
    /// otherwise when Redis cannot be reached in time.
    pub async fn control(&self) -> Result<Control, QueueError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.keys.control());
        let fields: Vec<(String, String)> = self.call(&cmd).await?;
        Control::from_fields(&fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Control {
        Control {
            ahead: 256,
            default_cap: Some(8),
            default_rate: Some(2.5),
            tenant_caps: [("acme".to_owned(), 0), ("globex".to_owned(), 3)].into(),
            tenant_rates: [("acme".to_owned(), 0.125)].into(),
            kind_rates: [("triage".to_owned(), 10.0)].into(),
            paused: true,
            paused_kinds: ["report".to_owned()].into(),
        }
    }

    #[test]
    fn control_round_trips_through_the_mirror_fields() {
        for c in [Control::default(), full()] {
            let fields = c.to_fields().expect("fields");
            assert_eq!(Control::from_fields(&fields).expect("parse"), c);
        }
        let fields = full().to_fields().expect("fields");
        let has = |k: &str, v: &str| fields.iter().any(|(fk, fv)| fk == k && fv == v);
        assert!(has("ahead", "256") && has("cap:acme", "0") && has("krate:triage", "10"), "{fields:?}");
        assert!(has("paused", "1") && has("paused:report", "1") && has("rate:acme", "0.125"), "{fields:?}");
    }

    #[test]
    fn bad_control_values_are_refused_with_the_setting_named() {
        let cases: Vec<(Control, &str)> = vec![
            (Control { default_rate: Some(f64::NAN), ..Control::default() }, "default_rate must be"),
            (Control { tenant_rates: [("acme".into(), -1.0)].into(), ..Control::default() }, "acme: -1"),
            (Control { kind_rates: [("k".into(), f64::INFINITY)].into(), ..Control::default() }, "k: inf"),
            (
                Control { tenant_caps: [("a b".into(), 1)].into(), ..Control::default() },
                "tenant_caps must be",
            ),
            (Control { paused_kinds: ["".into()].into(), ..Control::default() }, "paused_kinds must be"),
        ];
        for (c, want) in cases {
            let err = c.to_fields().expect_err("refused").to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let bad = [("cap".to_owned(), "many".to_owned())];
        let err = Control::from_fields(&bad).expect_err("refused").to_string();
        assert!(err.contains("control field \"cap\" holds \"many\""), "{err}");
    }
}
