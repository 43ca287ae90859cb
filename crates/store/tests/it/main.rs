//! Store conformance suite: every test runs against SQLite and PostgreSQL, each on a database of
//! its own (a temporary SQLite file; a fresh PostgreSQL database dropped afterwards), so the suite
//! runs in parallel and leaves nothing behind.

mod audit;
mod batches;
mod cancel;
mod connect;
mod console;
mod control;
mod harness;
mod hot;
mod jobs;
mod list;
mod migrate;
mod model;
mod ops;
mod retention;
mod schedule;
mod tenants;
