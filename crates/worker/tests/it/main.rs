//! Worker tests on real Redis, and on PostgreSQL and SQLite: the guide's checklist items 4–7 and the
//! crash cases.

mod cancel;
mod crashes;
mod fences;
mod harness;
mod kinds;
mod lifecycle;
mod retention;
mod startup;
