//! A Redis Cluster of three primaries on loopback ports for the tests, started on first use and
//! shared by every test process.
//!
//! [`cluster_url`] returns `LONGHAUL_TEST_REDIS_CLUSTER_URL` when set. Otherwise it makes sure a
//! healthy 3-primary cluster answers on 127.0.0.1:7101–7103 — starting `redis-server` nodes
//! (daemonized, no persistence, state under the temp directory) and joining them with
//! `redis-cli --cluster create` when none does — and returns its `redis+cluster://` URL. Test
//! binaries run concurrently: an exclusive lock on a file in the temp directory lets one process
//! start the cluster while the others wait, then reuse it. The nodes outlive the tests, so later
//! runs start at once; stop them with `redis-cli -p <port> shutdown nosave`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Ports of the test cluster's primaries.
pub const CLUSTER_PORTS: [u16; 3] = [7101, 7102, 7103];

/// The Redis Cluster the tests use (see the module documentation). Starts it when needed.
///
/// # Panics
/// When the cluster cannot be started (no `redis-server`, ports taken by something else…); the
/// message says what failed.
pub fn cluster_url() -> String {
    if let Ok(url) = std::env::var("LONGHAUL_TEST_REDIS_CLUSTER_URL") {
        return url;
    }
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            if let Err(e) = ensure_cluster() {
                panic!(
                    "could not start the test Redis Cluster on 127.0.0.1:{CLUSTER_PORTS:?}: {e} \
                     (install redis-server and redis-cli, or set LONGHAUL_TEST_REDIS_CLUSTER_URL)"
                );
            }
            let seeds: Vec<String> = CLUSTER_PORTS.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            format!("redis+cluster://{}", seeds.join(","))
        })
        .clone()
}

fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("longhaul-test-cluster-{}", CLUSTER_PORTS[0]))
}

fn ensure_cluster() -> Result<(), String> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    // Held until this function returns: one process at a time inspects or starts the cluster.
    lock.lock().map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    if healthy() {
        return Ok(());
    }
    for port in CLUSTER_PORTS {
        match node_info(port) {
            // A node of ours in a broken or half-made cluster: make it a fresh empty node.
            Some(_) => {
                redis_cli(port, &["FLUSHALL"])?;
                redis_cli(port, &["CLUSTER", "RESET", "HARD"])?;
            }
            None => start_node(&dir, port)?,
        }
    }
    wait(Duration::from_secs(10), "the nodes to answer", || {
        CLUSTER_PORTS.iter().all(|p| node_info(*p).is_some())
    })?;
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for port in CLUSTER_PORTS {
        create.arg(format!("127.0.0.1:{port}"));
    }
    create.args(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = create.output().map_err(|e| format!("run redis-cli --cluster create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    wait(Duration::from_secs(30), "cluster_state:ok on every node", healthy)
}

fn start_node(dir: &Path, port: u16) -> Result<(), String> {
    let conf = format!("nodes-{port}.conf");
    // A node file left by an earlier run would bring back a cluster that no longer exists.
    let _ = std::fs::remove_file(dir.join(&conf));
    let out = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file", &conf])
        .args(["--cluster-node-timeout", "5000"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .args(["--maxmemory-policy", "noeviction"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join(format!("redis-{port}.log")))
        .output()
        .map_err(|e| format!("run redis-server: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("redis-server on port {port} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `CLUSTER INFO` of the node on `port`, or `None` when nothing answers (or it is not a cluster
/// node).
fn node_info(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn).ok()
}

fn healthy() -> bool {
    CLUSTER_PORTS.iter().all(|p| {
        node_info(*p).is_some_and(|info| {
            info.contains("cluster_state:ok")
                && info.contains("cluster_slots_assigned:16384")
                && info.contains(&format!("cluster_known_nodes:{}", CLUSTER_PORTS.len()))
        })
    })
}

fn redis_cli(port: u16, args: &[&str]) -> Result<(), String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("run redis-cli: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("redis-cli -p {port} {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Polls `done` every 100 ms until it holds, or fails at `timeout`.
fn wait(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
