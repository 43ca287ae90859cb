//! Queue tests on real Redis. Each test owns a random key prefix and deletes its keys at the end,
//! so tests run in parallel and leave nothing behind. Most tests run twice: on one Redis server and
//! on a 3-primary Redis Cluster that the test kit starts on loopback ports.

mod admission;
mod cluster;
mod dead;
mod finishing;
mod harness;
mod protocol;
mod resilience;
mod tls;
