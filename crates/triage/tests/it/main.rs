//! Triage tests: the pipeline run directly on in-memory fakes and against the real store (SQLite
//! and PostgreSQL), and the HTTP edges against a local HTTP server.

mod fakes;
mod http;
mod kind;
mod pipeline;
mod store;
