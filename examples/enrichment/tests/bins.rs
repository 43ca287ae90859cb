//! The project's binaries answer `--help` with longhaul's flags. (Also why `cargo test
//! --workspace` builds them: the end-to-end tests in `tests/` run them as processes.)

use std::process::Command;

fn help(bin: &str) -> String {
    let out = Command::new(bin).arg("--help").output().expect("the binary runs");
    assert!(out.status.success(), "{bin} --help: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_worker_has_longhauls_worker_flags() {
    let text = help(env!("CARGO_BIN_EXE_enrich-worker"));
    assert!(text.contains("--queues") && text.contains("--concurrency"), "{text}");
}

#[test]
fn the_producer_has_longhauls_commands() {
    let text = help(env!("CARGO_BIN_EXE_enrich-producer"));
    assert!(text.contains("serve") && text.contains("enqueue") && text.contains("tenant"), "{text}");
}
