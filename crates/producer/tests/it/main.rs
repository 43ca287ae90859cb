//! Producer tests: handlers through `Router::oneshot`, outages, the reconciler, and one test over
//! real TCP. Real Redis, PostgreSQL and SQLite.

mod api;
mod harness;
mod limits;
mod outages;
mod partitions;
mod props;
