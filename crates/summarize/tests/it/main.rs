//! Summarize tests: the kind's validation and keys, the pipeline run directly on an in-memory
//! operation log (retries reuse stored steps), and the HTTP summarizer and webhook against local
//! HTTP servers.

mod fakes;
mod http;
mod kind;
mod pipeline;
