//! The Kubernetes manifests agree with the binaries: names, label selectors, ports, probe paths and
//! every environment variable. Expected names come from the binaries' own clap definitions (their
//! `--help`), not from a copied list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use longhaul_e2e::env_names;
use yaml_rust2::{Yaml, YamlLoader};

/// Read by the runtime rather than a flag.
const PROCESS_ENV: &[&str] = &["RUST_LOG"];

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

fn documents() -> Vec<(String, Yaml)> {
    let mut docs = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(k8s_dir()).expect("deploy/k8s").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for path in files {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
        {
            docs.push((name.clone(), doc));
        }
    }
    docs
}

fn s(y: &Yaml) -> &str {
    y.as_str().unwrap_or("")
}

fn labels(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (s(k).to_owned(), v.as_str().map(str::to_owned).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// Env var names a binary reads: `--help` of the binary and of the subcommand it runs.
fn accepted(binary: &str, args: &[String]) -> BTreeSet<String> {
    let bin = binary.rsplit('/').next().expect("binary");
    let mut names: BTreeSet<String> = env_names(bin, &[]).into_iter().collect();
    if let Some(sub) = args.first().filter(|a| !a.starts_with('-')) {
        names.extend(env_names(bin, &[sub]));
    }
    names.extend(PROCESS_ENV.iter().map(|s| (*s).to_owned()));
    names
}

#[test]
fn kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).expect("kustomization");
    let k = &YamlLoader::load_from_str(&text).expect("yaml")[0];
    let listed: BTreeSet<_> =
        k["resources"].as_vec().expect("resources").iter().map(|r| s(r).to_owned()).collect();
    let present: BTreeSet<_> = std::fs::read_dir(k8s_dir())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
}

#[test]
fn manifests_match_what_the_binaries_read() {
    let docs = documents();
    let configmap: BTreeMap<String, String> = docs
        .iter()
        .find(|(_, d)| s(&d["kind"]) == "ConfigMap")
        .map(|(_, d)| labels(&d["data"]))
        .expect("a ConfigMap");
    let mut deployments: BTreeMap<String, Yaml> = BTreeMap::new();
    let mut checked_containers = 0;
    for (file, doc) in &docs {
        let kind = s(&doc["kind"]);
        if kind != "Deployment" && kind != "Job" {
            continue;
        }
        let name = s(&doc["metadata"]["name"]).to_owned();
        let pod = &doc["spec"]["template"];
        if kind == "Deployment" {
            let selector = labels(&doc["spec"]["selector"]["matchLabels"]);
            assert!(
                subset(&selector, &labels(&pod["metadata"]["labels"])),
                "{file}: {name} selector does not match its pods"
            );
            deployments.insert(name.clone(), doc.clone());
        }
        for c in pod["spec"]["containers"].as_vec().expect("containers") {
            checked_containers += 1;
            let binary = s(&c["command"][0]);
            assert!(binary.starts_with("/usr/local/bin/"), "{file}: {name} runs {binary:?}");
            let args: Vec<String> =
                c["args"].as_vec().map(|a| a.iter().map(|x| s(x).to_owned()).collect()).unwrap_or_default();
            let names = accepted(binary, &args);
            let help = {
                let bin = binary.rsplit('/').next().expect("bin");
                let sub: Vec<&str> = args
                    .first()
                    .filter(|a| !a.starts_with('-'))
                    .map(|a| vec![a.as_str()])
                    .unwrap_or_default();
                let out = std::process::Command::new(longhaul_e2e::bin_path(bin))
                    .args(&sub)
                    .arg("--help")
                    .output()
                    .expect("help");
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.contains(flag.as_str()),
                    "{file}: {name} passes {flag}, which {binary} does not accept"
                );
            }
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            for e in c["env"].as_vec().map(Vec::as_slice).unwrap_or_default() {
                let var = s(&e["name"]).to_owned();
                assert!(
                    names.contains(&var),
                    "{file}: {name} sets {var}, which {binary} does not read; it reads {names:?}"
                );
                env.insert(var, s(&e["value"]).to_owned());
            }
            if kind == "Deployment" && !c["envFrom"].is_badvalue() {
                for key in configmap.keys() {
                    assert!(
                        names.contains(key),
                        "{file}: {name} gets ConfigMap key {key}, which {binary} does not read"
                    );
                }
            }
            // Probes hit real endpoints on the port the binary listens on.
            let ports: BTreeMap<String, i64> = c["ports"]
                .as_vec()
                .map(|p| {
                    p.iter()
                        .map(|p| (s(&p["name"]).to_owned(), p["containerPort"].as_i64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            for probe in ["readinessProbe", "livenessProbe"] {
                if kind == "Job" {
                    continue;
                }
                let get = &c[probe]["httpGet"];
                assert!(!get.is_badvalue(), "{file}: {name} has no {probe}");
                let path = s(&get["path"]);
                assert!(
                    path == "/readyz" && probe == "readinessProbe"
                        || path == "/healthz" && probe == "livenessProbe",
                    "{file}: {name} {probe} path {path}"
                );
                let port = ports
                    .get(s(&get["port"]))
                    .copied()
                    .unwrap_or_else(|| panic!("{file}: {name} {probe} names no container port"));
                let listen = env
                    .get("LONGHAUL_ADMIN_ADDR")
                    .or_else(|| env.get("LONGHAUL_LISTEN"))
                    .expect("a listen address");
                assert!(
                    listen.ends_with(&format!(":{port}")),
                    "{file}: {name} probes port {port} but listens on {listen}"
                );
            }
            if binary.ends_with("/worker") {
                let grace =
                    doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_i64().expect("grace");
                let shutdown = env.get("LONGHAUL_SHUTDOWN_GRACE").expect("shutdown grace");
                let secs: i64 = shutdown.trim_end_matches('s').parse().expect("seconds");
                assert!(
                    grace > secs,
                    "{file}: terminationGracePeriodSeconds {grace} must exceed --shutdown-grace {shutdown}"
                );
            }
        }
    }
    assert!(
        checked_containers >= 5,
        "producer, a worker per queue (triage, summarize), queue-events and the migration job"
    );
    for (file, doc) in &docs {
        let selector = match s(&doc["kind"]) {
            "Service" => labels(&doc["spec"]["selector"]),
            "PodDisruptionBudget" => labels(&doc["spec"]["selector"]["matchLabels"]),
            _ => continue,
        };
        let name = s(&doc["metadata"]["name"]);
        let target = deployments
            .values()
            .find(|d| subset(&selector, &labels(&d["spec"]["template"]["metadata"]["labels"])))
            .unwrap_or_else(|| panic!("{file}: {name} selects no Deployment"));
        if s(&doc["kind"]) == "Service" {
            let container_ports: Vec<String> = target["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_vec()
                .expect("ports")
                .iter()
                .map(|p| s(&p["name"]).to_owned())
                .collect();
            for p in doc["spec"]["ports"].as_vec().expect("ports") {
                assert!(
                    container_ports.contains(&s(&p["targetPort"]).to_owned()),
                    "{file}: {name} targets a port its pods lack"
                );
            }
        }
    }
}

/// The queues of the built-in kinds, from the shipped producer's registry (the worker's built-in
/// registry has the same kinds).
fn builtin_queues() -> BTreeSet<String> {
    let registry = longhaul_producer::startup::builtin().expect("the built-in registry");
    registry.queues().into_iter().map(str::to_owned).collect()
}

/// The value of env var `var` set literally on the first container of `doc` (a Deployment).
fn container_env<'a>(doc: &'a Yaml, var: &str) -> Option<&'a str> {
    doc["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_vec()?
        .iter()
        .find(|e| s(&e["name"]) == var)
        .and_then(|e| e["value"].as_str())
}

/// Deployments whose first container runs `binary` (`/usr/local/bin/<binary>`), by name.
fn deployments_running(docs: &[(String, Yaml)], binary: &str) -> BTreeMap<String, Yaml> {
    docs.iter()
        .filter(|(_, d)| s(&d["kind"]) == "Deployment")
        .filter(|(_, d)| {
            s(&d["spec"]["template"]["spec"]["containers"][0]["command"][0])
                == format!("/usr/local/bin/{binary}")
        })
        .map(|(_, d)| (s(&d["metadata"]["name"]).to_owned(), d.clone()))
        .collect()
}

#[test]
fn every_queue_has_its_own_worker_deployment() {
    let docs = documents();
    let queues = builtin_queues();
    assert_eq!(queues, BTreeSet::from(["summarize".to_owned(), "triage".to_owned()]));
    let workers = deployments_running(&docs, "worker");
    let mut served = BTreeSet::new();
    for (name, doc) in &workers {
        // One queue per Deployment, named after it, and a queue of a built-in kind (the worker
        // would serve nothing for an unknown one).
        let value = container_env(doc, "LONGHAUL_QUEUES")
            .unwrap_or_else(|| panic!("{name} sets no LONGHAUL_QUEUES: it would serve every queue"));
        assert!(!value.contains(',') && !value.contains('='), "{name} serves {value:?}, not one queue");
        assert!(queues.contains(value), "{name} serves {value:?}, which no built-in kind uses: {queues:?}");
        assert_eq!(name, &format!("longhaul-worker-{value}"), "the Deployment is named after its queue");
        assert!(served.insert(value.to_owned()), "two worker Deployments serve {value}");
    }
    assert_eq!(served, queues, "a worker Deployment per built-in queue");
    // No Deployment's selector matches another's pods (their controllers would fight over them).
    let all: Vec<(String, Yaml)> = docs
        .iter()
        .filter(|(_, d)| s(&d["kind"]) == "Deployment")
        .map(|(_, d)| (s(&d["metadata"]["name"]).to_owned(), d.clone()))
        .collect();
    for (a, da) in &all {
        let selector = labels(&da["spec"]["selector"]["matchLabels"]);
        for (b, db) in &all {
            if a != b {
                assert!(
                    !subset(&selector, &labels(&db["spec"]["template"]["metadata"]["labels"])),
                    "{a}'s selector also matches {b}'s pods"
                );
            }
        }
    }
    // queue-events tails every built-in queue.
    let events = deployments_running(&docs, "queue-events");
    assert_eq!(events.len(), 1);
    for (name, doc) in &events {
        let tailed: BTreeSet<String> = container_env(doc, "LONGHAUL_QUEUES")
            .unwrap_or_else(|| panic!("{name} sets no LONGHAUL_QUEUES"))
            .split(',')
            .map(str::to_owned)
            .collect();
        assert_eq!(tailed, queues, "{name} tails every built-in queue");
    }
    // The retired setting is gone from the shared ConfigMap (set, it stops every binary).
    let configmap =
        docs.iter().find(|(_, d)| s(&d["kind"]) == "ConfigMap").map(|(_, d)| labels(&d["data"])).expect("cm");
    assert!(!configmap.contains_key("LONGHAUL_QUEUE"), "the ConfigMap still sets the retired LONGHAUL_QUEUE");
    assert!(!configmap.contains_key("LONGHAUL_QUEUES"), "queues are per Deployment, not shared");
}

/// The default `binary --help` shows for the option read from env var `var`.
fn default_of(binary: &str, var: &str) -> String {
    let out =
        std::process::Command::new(longhaul_e2e::bin_path(binary)).arg("--help").output().expect("--help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let after =
        help.split(&format!("[env: {var}=]")).nth(1).unwrap_or_else(|| panic!("{binary} reads no {var}"));
    // Only up to the next option's env line: an option without a default must not take another's.
    let own = after.split("[env: ").next().unwrap_or_default();
    let value = own.split("[default: ").nth(1).and_then(|v| v.split(']').next());
    value.unwrap_or_else(|| panic!("{binary} shows no default for {var}")).trim().to_owned()
}

#[test]
fn keda_scales_each_queues_workers_on_its_own_stream_and_group() {
    let docs = documents();
    let configmap =
        docs.iter().find(|(_, d)| s(&d["kind"]) == "ConfigMap").map(|(_, d)| labels(&d["data"])).expect("cm");
    let workers = deployments_running(&docs, "worker");
    let scaled: Vec<&Yaml> =
        docs.iter().filter(|(_, d)| s(&d["kind"]) == "ScaledObject").map(|(_, d)| d).collect();
    let mut targets = BTreeSet::new();
    for object in scaled {
        let name = s(&object["metadata"]["name"]);
        let target = s(&object["spec"]["scaleTargetRef"]["name"]);
        let worker = workers
            .get(target)
            .unwrap_or_else(|| panic!("{name} scales {target:?}, not a worker Deployment"));
        assert!(targets.insert(target.to_owned()), "two ScaledObjects scale {target}");
        let queue = container_env(worker, "LONGHAUL_QUEUES").expect("the worker's queue");
        let triggers = object["spec"]["triggers"].as_vec().expect("triggers");
        assert_eq!(triggers.len(), 1, "{name}: one trigger, on its queue's stream");
        let trigger = &triggers[0];
        assert_eq!(s(&trigger["type"]), "redis-streams");
        // The stream the worker really reads: the same key space the queue crate computes.
        let keys = longhaul_queue::KeySpace::new(&configmap["LONGHAUL_QUEUE_PREFIX"], queue).expect("keys");
        assert_eq!(
            s(&trigger["metadata"]["stream"]),
            keys.jobs(),
            "ScaledObject {name} watches another stream than that of queue {queue}, which {target} serves"
        );
        assert_eq!(s(&trigger["metadata"]["consumerGroup"]), longhaul_queue::QueueConfig::default().group);
        let lag: u32 = s(&trigger["metadata"]["lagCount"]).parse().expect("lagCount is a number");
        assert!(lag > 0, "{name}: lagCount");
        // With admission on, the group's lag never exceeds the admission window: a window below
        // lagCount x maxReplicaCount would stop KEDA short of the maximum while a backlog waits.
        let max_replicas = object["spec"]["maxReplicaCount"].as_i64().expect("maxReplicaCount") as u32;
        // Unset in the Deployment: the ConfigMap's, else the worker's own default.
        let ahead: u32 = container_env(worker, "LONGHAUL_ADMIT_AHEAD")
            .map(str::to_owned)
            .or_else(|| configmap.get("LONGHAUL_ADMIT_AHEAD").cloned())
            .unwrap_or_else(|| default_of("worker", "LONGHAUL_ADMIT_AHEAD"))
            .parse()
            .expect("admit ahead");
        assert!(
            ahead == 0 || ahead >= lag * max_replicas,
            "{target}: LONGHAUL_ADMIT_AHEAD {ahead} < lagCount {lag} x maxReplicaCount {max_replicas}"
        );
        assert_eq!(s(&trigger["authenticationRef"]["name"]), "longhaul-redis");
    }
    let unscaled: Vec<_> = workers.keys().filter(|w| !targets.contains(*w)).collect();
    assert!(unscaled.is_empty(), "worker Deployments without a ScaledObject: {unscaled:?}");
    assert!(
        docs.iter().any(|(_, d)| s(&d["kind"]) == "TriggerAuthentication"
            && s(&d["metadata"]["name"]) == "longhaul-redis"),
        "the TriggerAuthentication the ScaledObjects name"
    );
}
