//! `producer operators create|list|revoke`: the credentials of the operator API. A key is printed
//! once, at creation; only its hash is stored.

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use longhaul_core::Registry;
use longhaul_service::args::DatabaseArgs;
use longhaul_store::OperatorName;
use serde::Serialize;

use super::migrated;
use super::output::{OutputArgs, Table, time};

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorsCommand {
    /// Create an operator and print its key (shown once; only its hash is stored).
    Create(CreateArgs),
    /// List the operators (names, never keys).
    List(ListArgs),
    /// Revoke an operator's key (it stops working at once).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The operator's name (1–64 of A–Z a–z 0–9 - _ . @): who audit rows say asked.
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The operator's name.
    name: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// `operators create --json`.
#[derive(Debug, Serialize)]
struct Created {
    name: String,
    key: String,
    created_at: DateTime<Utc>,
}

/// An operator, as `operators list --json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct OperatorView {
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct Revoked {
    name: String,
    revoked: bool,
}

/// Runs an `operators` command.
pub(crate) async fn run(
    database: &DatabaseArgs,
    registry: &Registry,
    command: OperatorsCommand,
) -> anyhow::Result<()> {
    match command {
        OperatorsCommand::Create(args) => {
            let name = OperatorName::parse(args.name).map_err(|e| anyhow!("NAME: {e}"))?;
            let store = migrated(database, registry).await?;
            let (operator, key) = store
                .create_operator(&name)
                .await
                .with_context(|| format!("failed to create operator {name} (does it exist already?)"))?;
            let created = Created {
                name: operator.name,
                key: key.expose().to_owned(),
                created_at: operator.created_at,
            };
            // The key alone on the line, as `tenant create` prints a tenant's.
            args.output.print(&created, |c| format!("{}\n", c.key))
        }
        OperatorsCommand::List(args) => {
            let store = database.connect().await?;
            let operators: Vec<OperatorView> = store
                .operators()
                .await?
                .into_iter()
                .map(|o| OperatorView { name: o.name, created_at: o.created_at })
                .collect();
            args.output.print(&operators, |list| render_operators(list))
        }
        OperatorsCommand::Revoke(args) => {
            let store = database.connect().await?;
            if !store.revoke_operator(&args.name).await? {
                bail!("no operator {:?}", args.name);
            }
            args.output.print(&Revoked { name: args.name, revoked: true }, |r| {
                format!("operator {} revoked\n", r.name)
            })
        }
    }
}

/// Operators as a table.
pub(crate) fn render_operators(list: &[OperatorView]) -> String {
    let mut table = Table::new(&["NAME", "CREATED"]);
    for o in list {
        table.row(vec![o.name.clone(), time(o.created_at)]);
    }
    table.render()
}
