//! Summarize tests: the kind's validation and keys.

mod kind;
