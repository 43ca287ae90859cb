//! `producer limits list|set|clear`: per-tenant caps and rates and per-kind rates, overriding the
//! configured defaults — in the database, which workers mirror into Redis.

use std::num::NonZeroU32;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use longhaul_core::{Registry, TenantId};
use longhaul_service::args::DatabaseArgs;
use longhaul_store::{LimitScope, Rate, Store};
use serde::Serialize;

use super::OperatorArgs;
use super::output::{OutputArgs, Table, time};
use crate::control::LimitView;

#[derive(Debug, Subcommand)]
pub(crate) enum LimitsCommand {
    /// Every limit set, tenants first.
    List(ListArgs),
    /// Set a tenant's limit (--max-running, --starts-per-second; the whole limit: one left out
    /// goes back to the default) or a kind's (--starts-per-second).
    Set(SetArgs),
    /// Clear a tenant's or a kind's limit: back to the defaults.
    Clear(ClearArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

/// A tenant or a kind.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Target {
    /// The tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// The kind.
    #[arg(long)]
    kind: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    target: Target,
    /// Jobs of the tenant running at once, at most (a whole number ≥ 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    max_running: Option<u32>,
    /// Starts per second, at most (a number from 0.001 to 1000000).
    #[arg(long, value_parser = rate)]
    starts_per_second: Option<f64>,
    #[command(flatten)]
    output: OutputArgs,
}

fn rate(s: &str) -> Result<f64, String> {
    let n: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    Rate::new(n).map(Rate::per_second)
}

#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArgs,
}

/// `limits list --json`, as `GET /admin/v1/limits` answers.
#[derive(Debug, Serialize)]
pub(crate) struct LimitList {
    pub(crate) limits: Vec<LimitView>,
}

/// `limits clear --json`, as the operator API's `DELETE` answers.
#[derive(Debug, Serialize)]
pub(crate) struct Cleared {
    pub(crate) scope: &'static str,
    pub(crate) name: String,
    pub(crate) cleared: bool,
}

/// The scope and name of `target`, checked: a tenant that exists, a kind `registry` has.
async fn target(store: &Store, registry: &Registry, target: Target) -> anyhow::Result<(LimitScope, String)> {
    match (target.tenant, target.kind) {
        (Some(tenant), None) => {
            let tenant = TenantId::parse(tenant).context("--tenant")?;
            if store.get_tenant(&tenant).await?.is_none() {
                bail!("no tenant {tenant}");
            }
            Ok((LimitScope::Tenant, tenant.to_string()))
        }
        (None, Some(kind)) => {
            if registry.options(&kind).is_none() {
                let known: Vec<_> = registry.names().collect();
                bail!("unknown kind {kind:?}; known: {}", known.join(", "));
            }
            Ok((LimitScope::Kind, kind))
        }
        _ => bail!("name a --tenant or a --kind"),
    }
}

/// Runs a `limits` command.
pub(crate) async fn run(
    database: &DatabaseArgs,
    registry: &Registry,
    command: LimitsCommand,
) -> anyhow::Result<()> {
    match command {
        LimitsCommand::List(args) => {
            let store = database.connect().await?;
            let limits = store.limits().await?.into_iter().map(LimitView::from).collect();
            args.output.print(&LimitList { limits }, render_limits)
        }
        LimitsCommand::Set(args) => {
            let store = database.connect().await?;
            let (scope, name) = target(&store, registry, args.target).await?;
            let cap = args.max_running.and_then(NonZeroU32::new);
            let rate = args
                .starts_per_second
                .map(Rate::new)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--starts-per-second: {e}"))?;
            let by = args.operator.by();
            let limit = match scope {
                LimitScope::Tenant => {
                    if cap.is_none() && rate.is_none() {
                        bail!("set --max-running or --starts-per-second (limits clear clears the limit)");
                    }
                    let tenant = TenantId::parse(name).context("--tenant")?;
                    store
                        .set_tenant_limit(&tenant, cap, rate, &by)
                        .await?
                        .context("the limit was not kept")?
                }
                LimitScope::Kind => {
                    if cap.is_some() {
                        bail!("--max-running: a kind's limit has --starts-per-second only");
                    }
                    let Some(rate) = rate else { bail!("--starts-per-second is required for a kind") };
                    store.set_kind_limit(&name, rate, &by).await?
                }
            };
            args.output.print(&LimitList { limits: vec![limit.into()] }, render_limits)
        }
        LimitsCommand::Clear(args) => {
            let store = database.connect().await?;
            let (scope, name) = target(&store, registry, args.target).await?;
            let cleared = store.clear_limit(scope, &name, &args.operator.by()).await?;
            let answer = Cleared { scope: scope.as_str(), name, cleared };
            args.output.print(&answer, |c| {
                let how = if c.cleared { "cleared" } else { "had no limit" };
                format!("{} {} {how}\n", c.scope, c.name)
            })
        }
    }
}

/// Limits as a table (`-`: the default).
pub(crate) fn render_limits(list: &LimitList) -> String {
    let mut table = Table::new(&["SCOPE", "NAME", "MAX_RUNNING", "STARTS_PER_SECOND", "UPDATED"]);
    let or_default = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    for l in &list.limits {
        table.row(vec![
            l.scope.to_owned(),
            l.name.clone(),
            or_default(l.max_running.map(|m| m.to_string())),
            or_default(l.starts_per_second.map(|r| r.to_string())),
            time(l.updated_at),
        ]);
    }
    table.render()
}
