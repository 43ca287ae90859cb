//! The README's configuration table and the binaries' flags agree, both ways.

use std::collections::BTreeSet;

use longhaul_e2e::env_names;

fn config_table() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let section = readme.split("## Configuration").nth(1).expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect()
}

#[test]
fn every_variable_a_binary_reads_is_documented_and_nothing_else_is() {
    let documented = config_table();
    let mut read = BTreeSet::new();
    for (bin, args) in [
        ("producer", vec![]),
        ("producer", vec!["serve"]),
        ("producer", vec!["enqueue"]),
        ("producer", vec!["queues", "pause"]),
        ("worker", vec![]),
        ("queue-events", vec![]),
    ] {
        read.extend(env_names(bin, &args));
    }
    let missing: Vec<_> = read.difference(&documented).collect();
    assert!(missing.is_empty(), "read by a binary but not in the README's configuration table: {missing:?}");
    let stale: Vec<_> = documented.difference(&read).collect();
    assert!(stale.is_empty(), "in the README's configuration table but read by no binary: {stale:?}");
    assert!(read.len() > 30, "the --help parsing found only {read:?}");
}
