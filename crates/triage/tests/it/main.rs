//! Triage tests: the pipeline run directly on in-memory fakes, and the HTTP edges against a local
//! HTTP server.

mod fakes;
mod hostile;
mod http;
mod pipeline;
