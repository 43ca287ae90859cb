//! Configuration errors stop each real binary at start-up, quickly, with one line on stderr that
//! names the setting — no panic, no backtrace, no secret. And credentials read from files
//! (`…_FILE`, as a Kubernetes secret volume mounts them) work end to end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use longhaul_e2e::{Mode, System, bin_path};

const PASSWORD: &str = "pw-config-7Qx9";

/// Runs `bin args` with a baseline environment plus `env`; (exit code, stdout, stderr). Fails the
/// test if the process is still running after 15 s.
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile_dir();
    let mut child = Command::new(bin_path(bin))
        .args(args)
        .env("DATABASE_URL", format!("sqlite://{}/db.sqlite", dir.display()))
        .env("REDIS_URL", longhaul_testkit::redis_url())
        .env("LONGHAUL_QUEUE_PREFIX", format!("lhtest-{}", longhaul_testkit::random_hex()))
        .env("LONGHAUL_LISTEN", "127.0.0.1:0")
        .env("LONGHAUL_ADMIN_ADDR", "127.0.0.1:0")
        .env("LONGHAUL_LOG_FORMAT", "json")
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("out")).expect("out"))
        .stderr(std::fs::File::create(dir.join("err")).expect("err"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{bin} {args:?} with {env:?} still running after 15 s; stderr: {}",
                std::fs::read_to_string(dir.join("err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(dir.join("out")).unwrap_or_default();
    let err = std::fs::read_to_string(dir.join("err")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (code, out, err)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("longhaul-config-{}", longhaul_testkit::random_hex()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Asserts a failed start: nonzero exit, exactly one non-empty stderr line naming `setting`, and
/// no panic, backtrace or password anywhere in the output. Returns the exit code and that line.
fn assert_fails_naming(bin: &[&str], env: &[(&str, &str)], setting: &str) -> (i32, String) {
    let (name, args) = bin.split_first().expect("binary");
    let (code, out, err) = run(name, args, env);
    let what = format!("{bin:?} with {env:?}");
    assert_ne!(code, 0, "{what}: exit code 0; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {err}");
    assert!(lines[0].starts_with(&format!("{name}: ")), "{what}: {}", lines[0]);
    assert!(lines[0].contains(setting), "{what}: the error does not name {setting}: {}", lines[0]);
    for text in [&out, &err] {
        for bad in ["panicked", "backtrace", "RUST_BACKTRACE", PASSWORD] {
            assert!(!text.contains(bad), "{what}: output contains {bad:?}: {text}");
        }
    }
    (code, lines[0].to_owned())
}

/// Asserts a refused flag or variable: as [`assert_fails_naming`], with exit code 2 (a usage
/// error) and every one of `phrases` in the line.
fn assert_refused(bin: &[&str], env: &[(&str, &str)], setting: &str, phrases: &[&str]) {
    let (code, line) = assert_fails_naming(bin, env, setting);
    assert_eq!(code, 2, "{bin:?} with {env:?}: a usage error exits 2: {line}");
    for phrase in phrases {
        assert!(line.contains(phrase), "{bin:?} with {env:?}: {phrase:?} is not in {line:?}");
    }
}

#[test]
fn the_retired_queue_setting_and_bad_queue_lists_are_refused() {
    let producer = ["producer", "serve"];
    let worker = ["worker"];
    let events = ["queue-events"];
    // Retired: each kind names its queue. Even a value that used to be valid stops every binary,
    // naming the setting that replaced it.
    for bin in [&producer[..], &worker, &events] {
        for value in ["x", "triage"] {
            assert_refused(
                bin,
                &[("LONGHAUL_QUEUE", value)],
                "LONGHAUL_QUEUES",
                &["LONGHAUL_QUEUE is no longer read"],
            );
        }
    }
    let old_flag: Vec<&str> = producer.iter().chain(&["--queue", "triage"]).copied().collect();
    assert_refused(&old_flag, &[], "LONGHAUL_QUEUES", &["LONGHAUL_QUEUE is no longer read"]);
    assert_refused(
        &["worker", "--queue", "triage"],
        &[],
        "LONGHAUL_QUEUES",
        &["LONGHAUL_QUEUE is no longer read"],
    );

    // A worker's queue list: `name[=concurrency]`, concurrency 1–4096, names from the safe set —
    // as a flag or in LONGHAUL_QUEUES, the line names the value, what is wrong, and the variable.
    let concurrency = |n: &str| format!("{n:?} is not a concurrency from 1 to 4096");
    let cases: [(&str, Vec<String>); 5] = [
        ("a=0", vec!["'a=0'".into(), concurrency("0")]),
        ("triage=5000", vec!["'triage=5000'".into(), concurrency("5000")]),
        ("triage=many", vec![concurrency("many")]),
        (
            "bad name",
            vec![
                "'bad name'".into(),
                "queue \"bad name\"".into(),
                "queue name contains".into(),
                "' ' at position 3".into(),
            ],
        ),
        ("triage,,summarize", vec!["queue \"\"".into(), "queue name must not be empty".into()]),
    ];
    for (value, phrases) in &cases {
        let phrases: Vec<&str> = phrases.iter().map(String::as_str).collect();
        assert_refused(&["worker", "--queues", value], &[], "LONGHAUL_QUEUES", &phrases);
        assert_refused(&worker, &[("LONGHAUL_QUEUES", value)], "LONGHAUL_QUEUES", &phrases);
    }
    // Well-formed, but not a queue this worker can serve: refused at start-up (exit code 1).
    for (value, phrase) in [
        ("nosuch", "\"nosuch\", which none of this worker's kinds use (their queues: summarize, triage"),
        ("triage,summarize=2,triage=4", "\"triage\" twice"),
    ] {
        let (code, line) = assert_fails_naming(&["worker", "--queues", value], &[], "--queues");
        assert_eq!(code, 1, "{value}: {line}");
        assert!(line.contains(phrase), "{value}: {phrase:?} is not in {line:?}");
    }
    // queue-events tails queues by name only.
    assert_refused(
        &events,
        &[("LONGHAUL_QUEUES", "bad name")],
        "LONGHAUL_QUEUES",
        &["queue \"bad name\"", "queue name contains ' '"],
    );
    assert_refused(
        &events,
        &[("LONGHAUL_QUEUES", "triage=4")],
        "LONGHAUL_QUEUES",
        &["queue \"triage=4\"", "queue name contains '='"],
    );
}

#[test]
fn bad_settings_stop_every_binary_with_one_line_naming_the_setting() {
    let producer = ["producer", "serve"];
    let worker = ["worker"];
    let events = ["queue-events"];
    let dir = tempfile_dir();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").expect("empty file");
    let empty = empty.to_str().expect("utf-8");
    let bad_pg = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/nothing");
    let acl_url = format!("redis://someone:{PASSWORD}@127.0.0.1:6379");

    for bin in [&producer[..], &worker, &events] {
        assert_fails_naming(bin, &[("REDIS_URL", "http://x")], "REDIS_URL");
        assert_fails_naming(bin, &[("REDIS_URL", "not a url")], "REDIS_URL");
        assert_fails_naming(bin, &[("REDIS_URL_FILE", "/nonexistent/redis-url")], "REDIS_URL_FILE");
        assert_fails_naming(bin, &[("REDIS_URL_FILE", empty)], "REDIS_URL_FILE");
        assert_fails_naming(bin, &[("REDIS_URL", &acl_url), ("REDIS_URL_FILE", empty)], "REDIS_URL");
        assert_fails_naming(bin, &[("REDIS_CA_FILE", "/nonexistent/ca.pem")], "REDIS_CA_FILE");
        assert_fails_naming(bin, &[("REDIS_CA_FILE", empty)], "REDIS_CA_FILE");
        assert_fails_naming(bin, &[("LONGHAUL_EVENTS_MAXLEN", "5")], "LONGHAUL_EVENTS_MAXLEN");
        assert_fails_naming(
            bin,
            &[("LONGHAUL_EVENTS_MAXLEN", "999999999999999999999999")],
            "LONGHAUL_EVENTS_MAXLEN",
        );
        assert_fails_naming(bin, &[("LONGHAUL_REDIS_TIMEOUT", "0s")], "LONGHAUL_REDIS_TIMEOUT");
        assert_fails_naming(bin, &[("LONGHAUL_REDIS_TIMEOUT", "soon")], "LONGHAUL_REDIS_TIMEOUT");
        assert_fails_naming(bin, &[("LONGHAUL_LOG_FORMAT", "xml")], "LONGHAUL_LOG_FORMAT");
    }
    for bin in [&producer[..], &worker] {
        assert_fails_naming(bin, &[("DATABASE_URL", "mysql://root:pw@db/app")], "DATABASE_URL");
        assert_fails_naming(bin, &[("DATABASE_URL", "garbage")], "DATABASE_URL");
        assert_fails_naming(bin, &[("DATABASE_URL", &bad_pg)], "DATABASE_URL");
        assert_fails_naming(bin, &[("DATABASE_URL_FILE", "/nonexistent/db-url")], "DATABASE_URL_FILE");
        assert_fails_naming(bin, &[("DATABASE_URL_FILE", empty)], "DATABASE_URL_FILE");
        assert_fails_naming(bin, &[("LONGHAUL_DB_POOL", "0")], "LONGHAUL_DB_POOL");
        assert_fails_naming(bin, &[("LONGHAUL_DB_TIMEOUT", "-1s")], "LONGHAUL_DB_TIMEOUT");
        // Retired: it meant a default in the producer and a cap in the worker. Even a value that used
        // to be valid stops the binary, naming both settings that replaced it.
        for value in ["5", "0"] {
            for replacement in ["LONGHAUL_DEFAULT_MAX_ATTEMPTS", "LONGHAUL_MAX_ATTEMPTS_CAP"] {
                assert_fails_naming(bin, &[("LONGHAUL_MAX_ATTEMPTS", value)], replacement);
            }
        }
    }
    let old_flag: Vec<&str> = producer.iter().chain(&["--max-attempts", "5"]).copied().collect();
    assert_fails_naming(&old_flag, &[], "LONGHAUL_DEFAULT_MAX_ATTEMPTS");
    assert_fails_naming(&["worker", "--max-attempts", "5"], &[], "LONGHAUL_MAX_ATTEMPTS_CAP");
    assert_fails_naming(
        &producer,
        &[("LONGHAUL_DEFAULT_MAX_ATTEMPTS", "0")],
        "LONGHAUL_DEFAULT_MAX_ATTEMPTS",
    );
    assert_fails_naming(
        &producer,
        &[("LONGHAUL_DEFAULT_MAX_ATTEMPTS", "101")],
        "LONGHAUL_DEFAULT_MAX_ATTEMPTS",
    );
    assert_fails_naming(&worker, &[("LONGHAUL_MAX_ATTEMPTS_CAP", "0")], "LONGHAUL_MAX_ATTEMPTS_CAP");
    assert_fails_naming(&worker, &[("LONGHAUL_MAX_ATTEMPTS_CAP", "many")], "LONGHAUL_MAX_ATTEMPTS_CAP");
    // A refused connection says so (not just "pool timed out").
    let (_, _, err) = run("producer", &["serve"], &[("DATABASE_URL", &bad_pg)]);
    assert!(err.contains("refused"), "{err}");
    assert_fails_naming(&producer, &[("LONGHAUL_LISTEN", "everywhere")], "LONGHAUL_LISTEN");
    assert_fails_naming(&producer, &[("LONGHAUL_REQUEST_TIMEOUT", "0s")], "LONGHAUL_REQUEST_TIMEOUT");
    assert_fails_naming(
        &producer,
        &[("LONGHAUL_RECONCILE_EVERY", "1 fortnight")],
        "LONGHAUL_RECONCILE_EVERY",
    );
    assert_fails_naming(&producer, &[("LONGHAUL_RETRY_AFTER", "0s")], "LONGHAUL_RETRY_AFTER");
    assert_fails_naming(&producer, &[("LONGHAUL_RETRY_AFTER", "soon")], "LONGHAUL_RETRY_AFTER");
    assert_fails_naming(&worker, &[("LONGHAUL_CONCURRENCY", "0")], "LONGHAUL_CONCURRENCY");
    assert_fails_naming(&worker, &[("LONGHAUL_CONCURRENCY", "100000000")], "LONGHAUL_CONCURRENCY");
    assert_fails_naming(&worker, &[("LONGHAUL_CONCURRENCY", "-3")], "LONGHAUL_CONCURRENCY");
    assert_fails_naming(&worker, &[("LONGHAUL_LEASE", "abc")], "LONGHAUL_LEASE");
    assert_fails_naming(&worker, &[("LONGHAUL_LEASE", "30s"), ("LONGHAUL_HEARTBEAT", "20s")], "--heartbeat");
    assert_fails_naming(&worker, &[("LONGHAUL_PROVIDER", "gpt")], "LONGHAUL_PROVIDER");
    assert_fails_naming(
        &worker,
        &[("LONGHAUL_PROVIDER_API_KEY_FILE", "/nonexistent/key")],
        "LONGHAUL_PROVIDER_API_KEY_FILE",
    );
    assert_fails_naming(
        &worker,
        &[("LONGHAUL_PROVIDER_API_KEY", PASSWORD), ("LONGHAUL_PROVIDER_API_KEY_FILE", empty)],
        "LONGHAUL_PROVIDER_API_KEY",
    );
    assert_fails_naming(&worker, &[("LONGHAUL_ADMIN_ADDR", "localhost")], "LONGHAUL_ADMIN_ADDR");
    assert_fails_naming(&events, &[("LONGHAUL_EVENTS_BATCH", "0")], "LONGHAUL_EVENTS_BATCH");
    assert_fails_naming(&events, &[("LONGHAUL_STATS_EVERY", "never")], "LONGHAUL_STATS_EVERY");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_are_read_from_mounted_secret_files() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let secrets = sys.dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("dir");
    // As a Kubernetes secret volume mounts them: one file per key, often with a trailing newline.
    let provider_key = format!("sk-file-{}", longhaul_testkit::random_hex());
    std::fs::write(secrets.join("database-url"), format!("{}\n", sys.db.url)).expect("write");
    std::fs::write(secrets.join("redis-url"), format!("{}\r\n", longhaul_testkit::redis_url()))
        .expect("write");
    std::fs::write(secrets.join("provider-api-key"), format!("{provider_key}\n")).expect("write");
    let file = |name: &str| secrets.join(name).to_str().expect("utf-8").to_owned();
    let (db_file, redis_file, key_file) = (file("database-url"), file("redis-url"), file("provider-api-key"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let remove = ["DATABASE_URL", "REDIS_URL", "LONGHAUL_PROVIDER_API_KEY"];
    sys.spawn_with(
        "producer",
        &["serve", "--skip-migrations"],
        &[("DATABASE_URL_FILE", &db_file), ("REDIS_URL_FILE", &redis_file), ("LONGHAUL_LISTEN", &listen)],
        &remove,
    );
    let worker = sys.spawn_with(
        "worker",
        &["--skip-migrations"],
        &[
            ("DATABASE_URL_FILE", &db_file),
            ("REDIS_URL_FILE", &redis_file),
            ("LONGHAUL_PROVIDER_API_KEY_FILE", &key_file),
            ("LONGHAUL_CONSUMER_NAME", "w-files"),
        ],
        &remove,
    );
    let http = sys.http();
    longhaul_testkit::wait_until(Duration::from_secs(20), "producer on secret files ready", async || {
        match http.get(format!("http://{listen}/readyz")).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // A job through the file-configured producer, run by the file-configured worker.
    sys.api = format!("http://{listen}");
    sys.ticket("T-files").await;
    let (status, job) = sys.triage("T-files").await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().expect("job id").to_owned();
    sys.wait_status(&job_id, "completed", Duration::from_secs(30)).await;
    let auth = sys.fake.provider_auth.lock().expect("lock").clone();
    assert_eq!(auth, vec![format!("Bearer {provider_key}")], "the key from the file, without its newline");
    assert!(!sys.procs[worker].output().contains(&provider_key), "the key is never logged");
}
