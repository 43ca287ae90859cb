//! Producer tests: handlers through `Router::oneshot`, outages, the reconciler, the CLI binary,
//! tests over real TCP (the events streams among them). Real Redis, PostgreSQL and SQLite.

mod admin;
mod api;
mod batch;
mod cancel;
mod cli;
mod events;
mod harness;
mod jobs;
mod limits;
mod listing;
mod operator_cli;
mod outages;
mod partitions;
mod props;
mod schedule;
