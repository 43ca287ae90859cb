//! The workspace's binaries as processes, for the end-to-end tests, the demo and the benchmark:
//! finding the built binaries ([`Binaries`]), starting them with a shared environment
//! ([`Launcher`]), waiting for the producer's readiness with a deadline ([`wait_ready`]), and
//! stopping them the way Kubernetes does — SIGTERM, a grace period, then SIGKILL ([`stop_all`]).
//! Each process's output goes to a log file or is left out ([`Output`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binaries every system run starts.
pub const BINARIES: [&str; 3] = ["producer", "worker", "queue-events"];

/// The directory holding the built `producer`, `worker` and `queue-events`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries next to the running executable: in its directory, or — for a test binary,
    /// which cargo puts in `deps/` — in the one above. `build_hint` says how to build them; it
    /// ends the error when one is missing.
    ///
    /// # Errors
    /// `"<path> is missing: <build_hint>"`.
    pub fn beside_current_exe(build_hint: &str) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
        let mut dir = exe.parent().ok_or("the running executable has no directory")?.to_path_buf();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        for bin in BINARIES {
            if !dir.join(bin).exists() {
                return Err(format!("{} is missing: {build_hint}", dir.join(bin).display()));
            }
        }
        Ok(Self { dir })
    }

    /// The path of binary `bin`.
    pub fn path(&self, bin: &str) -> PathBuf {
        self.dir.join(bin)
    }
}

/// Where a process's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output and standard error, both into this file (read back by [`Proc::output`]).
    LogFile(PathBuf),
    /// Standard output discarded, standard error to this process's own.
    StderrOnly,
}

/// One running process; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// The name it was started under (e.g. `worker-1`).
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its log file, for [`Output::LogFile`].
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Starts `command` as `name`, its output as `output` says (stdin is closed).
    ///
    /// # Errors
    /// When the log file cannot be created or the program cannot be started.
    pub fn start(name: &str, mut command: Command, output: Output) -> std::io::Result<Self> {
        let log = match output {
            Output::LogFile(path) => {
                let out = std::fs::File::create(&path)?;
                command.stdout(out.try_clone()?).stderr(out);
                Some(path)
            }
            Output::StderrOnly => {
                command.stdout(Stdio::null()).stderr(Stdio::inherit());
                None
            }
        };
        let child = command.stdin(Stdio::null()).spawn()?;
        Ok(Self { name: name.to_owned(), child, log })
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        let _ =
            Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).stderr(Stdio::null()).status();
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit; its exit status (`None`: still running).
    pub fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code (`None`: still running, or
    /// ended by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_status(timeout).and_then(|s| s.code())
    }

    /// Everything it has written so far (empty without a log file).
    pub fn output(&self) -> String {
        self.log.as_ref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a process ended under [`stop_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited on SIGTERM within the grace period.
    Exited(ExitStatus),
    /// It was still running when the grace period ended, and was killed.
    Killed,
}

/// Sends SIGTERM to every process, gives each until `grace` after that to exit, and kills the
/// rest. How each ended, in order, by name.
pub fn stop_all(procs: &mut [Proc], grace: Duration) -> Vec<(String, Stopped)> {
    for p in procs.iter() {
        p.term();
    }
    let deadline = Instant::now() + grace;
    procs
        .iter_mut()
        .map(|p| {
            let left = deadline.saturating_duration_since(Instant::now());
            let how = match p.wait_status(left) {
                Some(status) => Stopped::Exited(status),
                None => {
                    p.kill();
                    Stopped::Killed
                }
            };
            (p.name.clone(), how)
        })
        .collect()
}

/// Starts the binaries with one environment shared by every process (database, Redis, key
/// prefix, addresses, …), plus what each start adds.
#[derive(Debug, Clone)]
pub struct Launcher {
    bins: Binaries,
    /// The environment every process gets.
    pub env: BTreeMap<String, String>,
}

impl Launcher {
    /// A launcher for `bins` with `env` for every process.
    pub fn new<K: Into<String>, V: Into<String>>(
        bins: Binaries,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self { bins, env: env.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The binaries it starts.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// The command for `bin args`: the shared environment without the variables in `remove`, then
    /// `extra`.
    pub fn command(&self, bin: &str, args: &[&str], extra: &[(&str, &str)], remove: &[&str]) -> Command {
        let mut command = Command::new(self.bins.path(bin));
        for k in remove {
            command.env_remove(k);
        }
        command
            .args(args)
            .envs(self.env.iter().filter(|(k, _)| !remove.contains(&k.as_str())))
            .envs(extra.iter().copied());
        command
    }

    /// Starts `bin args` as `name` ([`Launcher::command`], [`Proc::start`]).
    ///
    /// # Errors
    /// As [`Proc::start`].
    pub fn spawn(
        &self,
        name: &str,
        bin: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        output: Output,
    ) -> std::io::Result<Proc> {
        Proc::start(name, self.command(bin, args, extra, &[]), output)
    }

    /// Runs `producer tenant create <args…>` (which migrates first) with `extra` environment;
    /// the tenant's API key it prints.
    ///
    /// # Errors
    /// The producer's standard error when it fails, or why it could not run.
    pub fn create_tenant(&self, args: &[&str], extra: &[(&str, &str)]) -> Result<String, String> {
        let mut full = vec!["tenant", "create"];
        full.extend(args);
        self.producer_cli(&full, extra)
    }

    /// Runs `producer <args>` with the launcher's environment plus `extra`, and returns its
    /// standard output, trimmed (an operator key for `operators create <name>`, say).
    ///
    /// # Errors
    /// The producer's standard error when it fails, or why it could not run.
    pub fn producer_cli(&self, args: &[&str], extra: &[(&str, &str)]) -> Result<String, String> {
        let out = self
            .command("producer", args, extra, &[])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bins.path("producer").display()))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
///
/// # Errors
/// When no port can be bound on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `GET {base}/readyz` until it answers 2xx; at `timeout`, the last answer or error seen.
///
/// # Errors
/// The last state seen when the deadline passed.
pub async fn wait_ready(base: &str, timeout: Duration) -> Result<(), String> {
    let http = reqwest::Client::new();
    crate::poll_until(timeout, async || match http.get(format!("{base}/readyz")).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await
}
