//! Queue tests on real Redis. Each test owns a random key prefix and deletes its keys at the end,
//! so tests run in parallel and leave nothing behind.

mod harness;
mod protocol;
mod resilience;
mod tls;
