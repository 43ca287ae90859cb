//! What a benchmark run measures besides time: CPU ticks of every process on the path (ours from
//! `/proc/<pid>/stat`, PostgreSQL's including exited backends, redis-server's from `INFO cpu`),
//! Redis commands (`INFO commandstats`), SQL statements and commits (`pg_stat_statements`,
//! `pg_stat_database`), and quantiles.

use std::collections::HashMap;

use anyhow::Context as _;
use longhaul_testkit::procs::Proc;
use serde_json::json;
use sqlx::PgConnection;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// `(utime + stime, cutime + cstime)` of `pid`, in ticks; `None` if it is gone.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(4).filter_map(|v| v.parse().ok()).collect();
    (f.len() == 4).then(|| (f[0] + f[1], f[2] + f[3]))
}

/// Pids whose command name is `comm`, with their parent pid.
fn pids_named(comm: &str) -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// CPU ticks used so far by every process that serves a run, by name. PostgreSQL: its live
/// processes plus what the postmaster's exited children (closed connections) used.
pub fn cpu_snapshot(procs: &[Proc]) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> =
        procs.iter().filter_map(|p| Some((p.name.clone(), cpu_ticks(p.child.id())?.0))).collect();
    let postgres = pids_named("postgres");
    let own: std::collections::HashSet<u32> = postgres.iter().map(|(pid, _)| *pid).collect();
    let pg: u64 = postgres
        .iter()
        .filter_map(|(pid, ppid)| {
            let (mine, children) = cpu_ticks(*pid)?;
            Some(if own.contains(ppid) { mine } else { mine + children })
        })
        .sum();
    out.insert("postgres".into(), pg);
    out.insert(
        "redis-server".into(),
        pids_named("redis-server").iter().filter_map(|(p, _)| cpu_ticks(*p)).map(|t| t.0).sum(),
    );
    out.insert("bench".into(), cpu_ticks(std::process::id()).map_or(0, |t| t.0));
    out
}

/// The Redis server's own CPU time (`INFO cpu`), in ticks.
pub async fn redis_cpu_ticks(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let secs: f64 = info
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split_once(':')?.1.trim().parse::<f64>().ok())
        .sum();
    Ok((secs * TICKS_PER_S) as u64)
}

/// CPU milliseconds per job between two snapshots.
pub fn cpu_ms_per_job(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    n: usize,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, end) in after {
        let start = before.get(name).copied().unwrap_or(0);
        let ms = end.saturating_sub(start) as f64 / TICKS_PER_S * 1000.0 / n as f64;
        out.insert(name.clone(), json!((ms * 100.0).round() / 100.0));
    }
    serde_json::Value::Object(out)
}

/// Redis commands run so far (`INFO commandstats`, the INFO calls themselves left out).
pub async fn redis_calls(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum())
}

/// (statements, commits) so far in the bench database; statements need pg_stat_statements.
///
/// # Errors
/// When the commit count cannot be read: a figure is never made up.
pub async fn sql_counts(admin: &mut PgConnection, db: &str) -> anyhow::Result<(Option<i64>, i64)> {
    let statements: Option<i64> = sqlx::query_scalar(
        "SELECT COALESCE(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = $1",
    )
    .bind(db)
    .fetch_one(&mut *admin)
    .await
    .ok()
    .flatten();
    let commits: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(&mut *admin)
        .await
        .context("reading the commit count from pg_stat_database")?;
    Ok((statements, commits))
}

/// The `p` quantile of `sorted`, rounded to hundredths.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let v = sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    (v * 100.0).round() / 100.0
}
