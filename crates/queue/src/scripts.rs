//! The Lua scripts: every multi-step change of queue state is one script, so it is atomic. Each
//! script is a file under `crates/queue/lua/`, whose header states its `KEYS`, `ARGV` and reply;
//! `lua/trace.lua` (the `live()` test of a job's presence key) and `lua/admission.lua` (the
//! admission helpers: settings, backlog, token buckets, the fast path, wait lists) are spliced in
//! front of the scripts that use them, so each has one source.
//!
//! Each script touches only keys of one hash tag. Most are passed in `KEYS`; the admission scripts
//! (`enqueue`, `promote`, `admit`, `defer`, `heal`) also name keys from the queue's base, passed in
//! `ARGV` — the wait lists, rings, active sets, buckets and presence keys of the flows and jobs they meet,
//! which the caller cannot know in advance. They share the hash tag of the keys in `KEYS`, so
//! Redis Cluster runs them on the one node holding the queue's slot.
//!
//! Every script is safe to run twice (a cluster client retries a call after an I/O error without
//! knowing whether the first run happened): a second run finds its entries no longer pending, or
//! its keys already set, and changes nothing.
//!
//! A job's presence key holds `<attempt>:<entry id>` while the job has an entry in the stream,
//! `<attempt>:d` while it waits in the delayed set, and `<attempt>:w` while it waits in a wait list
//! for admission. A key whose entry is gone from the stream
//! (deleted while pending, or dead-lettered) is no trace: `live()` sees through it, so the
//! reconciler restores the job and an enqueue replaces the key.

use std::sync::LazyLock;

use redis::Script;

/// A script from `lua/<name>.lua`, optionally behind the `live()` prelude of `lua/trace.lua`
/// (`traced`) and the admission helpers of `lua/admission.lua` (`admitting`).
macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(include_str!(concat!("../lua/", $file))))
    };
    (traced $file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(include_str!("../lua/trace.lua"), include_str!(concat!("../lua/", $file))))
        })
    };
    (admitting $file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/admission.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        })
    };
    (traced admitting $file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/trace.lua"),
                include_str!("../lua/admission.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        })
    };
}

/// Idempotent enqueue ([`crate::Queue::enqueue`]).
pub(crate) static ENQUEUE: LazyLock<Script> = script!(traced admitting "enqueue.lua");

/// Idempotent delayed enqueue ([`crate::Queue::enqueue_at`]).
pub(crate) static ENQUEUE_DELAYED: LazyLock<Script> = script!(traced "enqueue_delayed.lua");

/// Whether a job has a live trace ([`crate::Queue::has_trace`]).
pub(crate) static HAS_TRACE: LazyLock<Script> = script!(traced "has_trace.lua");

/// Finish a batch of deliveries and take new entries ([`crate::Queue::finish_batch`]).
pub(crate) static FINISH: LazyLock<Script> = script!("finish.lua");

/// Schedule a retry ([`crate::Queue::retry`]).
pub(crate) static RETRY: LazyLock<Script> = script!("retry.lua");

/// Move due retries into the jobs stream or their wait lists ([`crate::Queue::promote_due`]).
pub(crate) static PROMOTE: LazyLock<Script> = script!(admitting "promote.lua");

/// Admit waiting entries into the jobs stream ([`crate::Queue::admit`]).
pub(crate) static ADMIT: LazyLock<Script> = script!(admitting "admit.lua");

/// Put a delivery back at the front of its flow's wait list ([`crate::Queue::defer`]).
pub(crate) static DEFER: LazyLock<Script> = script!(admitting "defer.lua");

/// Drop active-set members no longer in the stream, re-ring lost flows ([`crate::Queue::heal`]).
pub(crate) static HEAL: LazyLock<Script> = script!("heal.lua");

/// Replace the control mirror ([`crate::Queue::set_control`]).
pub(crate) static SET_CONTROL: LazyLock<Script> = script!("set_control.lua");

/// Reclaim entries idle longer than the lease ([`crate::Queue::reclaim`]).
pub(crate) static RECLAIM: LazyLock<Script> = script!("reclaim.lua");

/// Keep entries leased ([`crate::Queue::heartbeat_owners`]).
pub(crate) static HEARTBEAT: LazyLock<Script> = script!("heartbeat.lua");

/// Dead-letter an undecodable entry.
pub(crate) static DEAD_LETTER: LazyLock<Script> = script!("dead_letter.lua");

/// Make entries reclaimable at once ([`crate::Queue::hand_back`]).
pub(crate) static HAND_BACK: LazyLock<Script> = script!("hand_back.lua");

/// Drop a cancelled scheduled job's delayed entry ([`crate::Queue::unschedule`]).
pub(crate) static UNSCHEDULE: LazyLock<Script> = script!("unschedule.lua");

/// Dead-letter a stalled entry ([`crate::Queue::dead_letter_stalled`]).
pub(crate) static DEAD_STALLED: LazyLock<Script> = script!("dead_stalled.lua");

/// Put a dead letter back into the jobs stream ([`crate::Queue::replay_dead`]).
pub(crate) static DEAD_REPLAY: LazyLock<Script> = script!("dead_replay.lua");

/// Purge every dead letter ([`crate::Queue::purge_all_dead`]).
pub(crate) static DEAD_PURGE_ALL: LazyLock<Script> = script!("dead_purge_all.lua");

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// Whether `luac5.1 -p` accepts `text`; `None` when `luac5.1` is not installed.
    fn parses(text: &str) -> Option<Result<(), String>> {
        let mut child = Command::new("luac5.1")
            .args(["-p", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to luac5.1");
        let out = child.wait_with_output().expect("luac5.1");
        Some(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) })
    }

    /// Every script parses as Lua 5.1 (the dialect Redis embeds), alone and, for those using
    /// `live()` or the helpers of `admission.lua`, behind those preludes as Redis receives them. Needs `luac5.1` (Debian:
    /// `apt-get install lua5.1`, which the test command installs); without it the test says so and
    /// checks nothing — unless `CI` is set, where a missing `luac5.1` fails it.
    #[test]
    fn every_script_parses_as_lua() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        let prelude = std::fs::read_to_string(dir.join("trace.lua")).expect("trace.lua");
        let admission = std::fs::read_to_string(dir.join("admission.lua")).expect("admission.lua");
        let helpers: Vec<String> = admission
            .lines()
            .filter_map(|l| l.strip_prefix("local function "))
            .filter_map(|l| l.split('(').next())
            .map(|name| format!("{name}("))
            .collect();
        assert!(helpers.len() >= 5, "admission.lua defines its helpers: {helpers:?}");
        if parses(&prelude).is_none() {
            assert!(std::env::var_os("CI").is_none(), "luac5.1 is missing: scripts/services.sh installs it");
            eprintln!("luac5.1 is not installed: the Lua scripts were not parsed");
            return;
        }
        let mut checked = 0;
        for file in std::fs::read_dir(&dir).expect("the lua directory") {
            let path = file.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "lua") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a script");
            let mut texts = vec![text.clone()];
            let prelude_file = path.file_name().is_some_and(|n| n == "trace.lua" || n == "admission.lua");
            if !prelude_file && text.contains("live()") {
                texts.push(format!("{prelude}{text}"));
            }
            if !prelude_file && helpers.iter().any(|h| text.contains(h.as_str())) {
                texts.push(format!("{prelude}{admission}{text}"));
            }
            for text in texts {
                let parsed = parses(&text).expect("luac5.1 ran before");
                assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
            }
            checked += 1;
        }
        assert_eq!(checked, 20, "scripts in {}", dir.display());
    }
}
