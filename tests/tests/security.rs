//! Credentials in practice: a Redis ACL user limited to the test's key prefix runs the whole system,
//! so does a TLS-only Redis (`rediss://`) with a private CA, a wrong Redis password fails clearly, and no secret (database password, Redis password, tenant
//! API key, provider key) ever reaches a log line, `--help`, or an HTTP answer — on the normal path
//! and on failure paths.

use std::process::Command;
use std::time::Duration;

use longhaul_e2e::{Mode, System, bin_path};
use longhaul_testkit::{TlsRedis, random_hex, redis_url, wait_until};

const LONG: Duration = Duration::from_secs(30);

/// A Redis ACL user with a random name and password, allowed only keys under `prefix`; deleted on
/// drop.
struct AclUser {
    name: String,
    password: String,
}

impl AclUser {
    fn create(prefix: &str) -> Self {
        let user =
            Self { name: format!("lhtest-{}", random_hex()), password: format!("rpw-{}", random_hex()) };
        let mut conn =
            redis::Client::open(redis_url()).expect("client").get_connection().expect("connection");
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user.name)
            .arg("reset")
            .arg("on")
            .arg(format!(">{}", user.password))
            .arg(format!("~{prefix}*"))
            .arg("&*")
            .arg("+@all")
            .query::<()>(&mut conn)
            .expect("ACL SETUSER");
        user
    }

    /// The test Redis URL with this user's credentials (`password` overrides the real one).
    fn url(&self, password: Option<&str>) -> String {
        let base = redis_url();
        let rest = base.strip_prefix("redis://").expect("a redis:// test URL");
        format!("redis://{}:{}@{rest}", self.name, password.unwrap_or(&self.password))
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let _: redis::RedisResult<u64> = redis::cmd("ACL").arg("DELUSER").arg(&self.name).query(&mut conn);
    }
}

/// The system on PostgreSQL, with Redis reached as a fresh ACL user limited to its prefix.
async fn start_as_acl_user(extra: &[(&str, &str)]) -> (System, AclUser) {
    let mut acl = None;
    let sys = System::start_custom(Mode::Ok, extra, |prefix, _| {
        let user = AclUser::create(prefix);
        let url = user.url(None);
        acl = Some(user);
        vec![("REDIS_URL".to_owned(), url)]
    })
    .await;
    (sys, acl.expect("the ACL user"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_acl_user_limited_to_its_prefix_runs_the_system() {
    let (mut sys, acl) = start_as_acl_user(&[]).await;
    // The user really is limited: a key outside its prefix is refused.
    let mut conn = redis::Client::open(acl.url(None)).expect("client").get_connection().expect("connection");
    let outside: redis::RedisResult<()> =
        redis::cmd("SET").arg(format!("elsewhere-{}", random_hex())).arg(1).query(&mut conn);
    let err = outside.expect_err("a key outside the prefix");
    assert!(err.to_string().to_lowercase().contains("no permissions"), "{err}");

    run_one_job(&mut sys, "acl").await;

    // A wrong password: the worker says so, clearly, without the password.
    let wrong = format!("wrong-{}", random_hex());
    let url = acl.url(Some(&wrong));
    let bad = sys.spawn(
        "worker",
        &["--skip-migrations"],
        &[("REDIS_URL", &url), ("LONGHAUL_CONSUMER_NAME", "w-bad")],
    );
    let line = wait_until(LONG, "the wrong-password error in the worker's log", async || {
        let out = sys.procs[bad].output();
        match out.lines().find(|l| l.contains("Password authentication failed")) {
            Some(l) => Ok(l.to_owned()),
            None => Err(out),
        }
    })
    .await;
    assert!(line.to_lowercase().contains("redis"), "the line names Redis: {line}");
    assert!(!sys.procs[bad].output().contains(&wrong), "the password is not logged");
    assert!(!sys.procs[bad].output().contains(&acl.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_system_runs_over_rediss_with_a_private_ca() {
    let tls = TlsRedis::start();
    let ca = tls.ca_file().to_str().expect("utf-8").to_owned();
    let url = tls.url();
    // The producer is ready only once its Redis answers: over TLS, trusting the CA from the file.
    let mut sys = System::start(Mode::Ok, &[("REDIS_URL", &url), ("REDIS_CA_FILE", &ca)]).await;
    run_one_job(&mut sys, "tls").await;
    // Without the CA file the certificate is not trusted: the worker reports it and runs nothing.
    let untrusted = sys.spawn_with(
        "worker",
        &["--skip-migrations"],
        &[("LONGHAUL_CONSUMER_NAME", "w-untrusted")],
        &["REDIS_CA_FILE"],
    );
    wait_until(LONG, "the untrusted-certificate error", async || {
        let out = sys.procs[untrusted].output().to_lowercase();
        if out.contains("certificate") || out.contains("issuer") { Ok(()) } else { Err(out) }
    })
    .await;
    drop(sys);
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_reach_logs_help_or_error_answers() {
    let pg_password = format!("pgpw-{}", random_hex());
    let provider_key = format!("sk-live-{}", random_hex());
    let wrong_redis = format!("wrong-{}", random_hex());
    let db_url = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut acl = None;
    let mut sys = {
        let (pg_password, db_url) = (pg_password.clone(), db_url.clone());
        System::start_custom(
            Mode::Ok,
            &[
                ("LONGHAUL_PROVIDER_API_KEY", &provider_key),
                ("RUST_LOG", "debug"),
                ("LONGHAUL_DEFAULT_MAX_ATTEMPTS", "2"),
                ("LONGHAUL_MAX_ATTEMPTS_CAP", "2"),
            ],
            |prefix, url| {
                // Trust authentication ignores the password, so it is accepted: it must still never
                // be printed.
                let with_password = url.replacen("postgres@", &format!("postgres:{pg_password}@"), 1);
                assert_ne!(with_password, url, "LONGHAUL_TEST_PG_URL has the form postgres://postgres@…");
                *db_url.lock().expect("lock") = with_password.clone();
                let user = AclUser::create(prefix);
                let redis = user.url(None);
                acl = Some(user);
                vec![("DATABASE_URL".to_owned(), with_password), ("REDIS_URL".to_owned(), redis)]
            },
        )
        .await
    };
    let acl = acl.expect("ACL user");
    let db_url = db_url.lock().expect("lock").clone();
    let secrets = [
        pg_password.clone(),
        acl.password.clone(),
        wrong_redis.clone(),
        provider_key.clone(),
        sys.key.clone(),
    ];
    let mut answers: Vec<String> = Vec::new();

    // The normal path, and a provider that fails every attempt.
    sys.spawn("queue-events", &[], &[("LONGHAUL_CONSUMER_NAME", "qe-s")]);
    sys.worker("w-s");
    sys.ticket("T-ok").await;
    let (_, job) = sys.triage("T-ok").await;
    sys.wait_status(job["job_id"].as_str().expect("id"), "completed", LONG).await;
    assert_eq!(sys.fake.provider_auth.lock().expect("lock")[0], format!("Bearer {provider_key}"));
    sys.fake.set_mode(Mode::AlwaysFail);
    sys.ticket("T-fail").await;
    let (_, job) = sys.triage("T-fail").await;
    let failed = sys.wait_status(job["job_id"].as_str().expect("id"), "failed", LONG).await;
    answers.push(failed.to_string());

    // Wrong and malformed credentials at the API: 401 problem documents.
    let http = sys.http();
    for auth in [
        format!("Bearer {provider_key}"),
        format!("Bearer {}", acl.password),
        format!("Bearer {}x", sys.key),
        format!("Basic {}", sys.key),
        format!("Bearer {pg_password} {}", sys.key),
    ] {
        let r =
            http.get(format!("{}/v1/jobs", sys.api)).header("authorization", auth).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 401);
        answers.push(r.text().await.expect("body"));
    }
    // Client errors with the valid key.
    for body in [format!("{{\"ticket_id\":\"{provider_key}\"}}"), "{".to_owned()] {
        let r = http
            .post(format!("{}/v1/tickets", sys.api))
            .bearer_auth(&sys.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert!(r.status().is_client_error());
        answers.push(r.text().await.expect("body"));
    }

    // Failure paths of the connections: a wrong Redis password (producer, worker, queue-events), a
    // database that refuses connections, a database that does not exist.
    let wrong_url = acl.url(Some(&wrong_redis));
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let producer = sys.spawn(
        "producer",
        &["serve", "--skip-migrations"],
        &[("REDIS_URL", &wrong_url), ("LONGHAUL_LISTEN", &listen)],
    );
    let worker = sys.spawn(
        "worker",
        &["--skip-migrations"],
        &[("REDIS_URL", &wrong_url), ("LONGHAUL_CONSUMER_NAME", "w-x")],
    );
    let events =
        sys.spawn("queue-events", &[], &[("REDIS_URL", &wrong_url), ("LONGHAUL_CONSUMER_NAME", "qe-x")]);
    let refused = db_url.replacen("127.0.0.1:5432", "127.0.0.1:1", 1);
    let no_db = format!("{}/longhaul_missing_{}", db_url.rsplit_once('/').expect("path").0, random_hex());
    let exits = [
        sys.spawn("producer", &["serve"], &[("DATABASE_URL", &refused)]),
        sys.spawn("worker", &[], &[("DATABASE_URL", &no_db)]),
        sys.spawn("producer", &["migrate"], &[("DATABASE_URL", &no_db)]),
    ];
    for i in exits {
        assert_eq!(sys.procs[i].wait_exit(LONG), Some(1), "{}", sys.procs[i].output());
    }
    let ready = wait_until(LONG, "the producer with a wrong Redis password answers /readyz", async || {
        match http.get(format!("http://{listen}/readyz")).send().await {
            Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert_eq!(ready.0, 503, "{ready:?}");
    answers.push(ready.1);
    sys.ticket("T-late").await;
    let r = http
        .post(format!("http://{listen}/v1/tickets/T-late/triage"))
        .bearer_auth(&sys.key)
        .send()
        .await
        .expect("triage");
    // The record is written and runs once the queue takes it (the reconciler, or the client's
    // retry), so the answer is "try again later" — a problem document that says nothing of the
    // cause.
    assert_eq!(r.status().as_u16(), 503);
    let problem = r.text().await.expect("body");
    let parsed: serde_json::Value = serde_json::from_str(&problem).expect("a problem document");
    assert_eq!(
        (parsed["type"].as_str(), parsed["retryable"].as_bool()),
        (Some("/problems/unavailable"), Some(true)),
        "{problem}"
    );
    assert!(!problem.to_lowercase().contains("password"), "{problem}");
    answers.push(problem);
    let mut late = Vec::new();
    for job in sys.list_as(&sys.key, "kind=triage").await {
        let record = sys.job(&job).await;
        if record["input"]["ticket_id"] == "T-late" {
            late.push(record["status"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(late, ["queued"], "the record was written before the enqueue failed");
    for i in [producer, worker, events] {
        wait_until(LONG, "an authentication-failure log line", async || {
            let out = sys.procs[i].output();
            if out.contains("Password authentication failed") { Ok(()) } else { Err(out) }
        })
        .await;
    }

    // --help with every secret in the environment.
    for bin in ["producer", "worker", "queue-events"] {
        let out = Command::new(bin_path(bin))
            .arg("--help")
            .env("DATABASE_URL", &db_url)
            .env("REDIS_URL", acl.url(None))
            .env("LONGHAUL_PROVIDER_API_KEY", &provider_key)
            .output()
            .expect("--help");
        answers.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }

    let mut logs: Vec<(String, String)> = sys.procs.iter().map(|p| (p.name.clone(), p.output())).collect();
    logs.extend(answers.into_iter().map(|a| ("an answer".to_owned(), a)));
    assert!(logs.iter().map(|(_, l)| l.len()).sum::<usize>() > 10_000, "the logs were captured");
    for (name, text) in &logs {
        for secret in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let line = text[..at].rsplit('\n').next().unwrap_or_default();
                panic!("{name} contains a secret: …{line}{secret}…");
            }
        }
    }
}

/// Starts queue-events and a worker (named after `tag`), runs ticket `T-<tag>` through the API to
/// `completed`, and waits for queue-events to log the completion: the whole path works.
async fn run_one_job(sys: &mut System, tag: &str) {
    let events = sys.spawn("queue-events", &[], &[("LONGHAUL_CONSUMER_NAME", &format!("qe-{tag}"))]);
    sys.worker(&format!("w-{tag}"));
    let ticket = format!("T-{tag}");
    sys.ticket(&ticket).await;
    let (status, job) = sys.triage(&ticket).await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    sys.wait_status(&job_id, "completed", LONG).await;
    wait_until(LONG, "queue-events saw the completion", async || {
        let seen = sys
            .log_lines(events)
            .iter()
            .any(|l| l["message"] == "job completed" && l["job_id"] == job_id.as_str());
        if seen { Ok(()) } else { Err(sys.procs[events].output()) }
    })
    .await;
}
