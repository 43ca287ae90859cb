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
    assert!(checked_containers >= 4, "producer, worker, queue-events and the migration job");
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

#[test]
fn keda_scales_the_worker_on_the_real_stream_and_group() {
    let docs = documents();
    let configmap =
        docs.iter().find(|(_, d)| s(&d["kind"]) == "ConfigMap").map(|(_, d)| labels(&d["data"])).expect("cm");
    let scaled = docs
        .iter()
        .find(|(_, d)| s(&d["kind"]) == "ScaledObject")
        .map(|(_, d)| d.clone())
        .expect("ScaledObject");
    let target = s(&scaled["spec"]["scaleTargetRef"]["name"]);
    let worker =
        docs.iter().find(|(_, d)| s(&d["kind"]) == "Deployment" && s(&d["metadata"]["name"]) == target);
    assert!(worker.is_some_and(|(_, d)| {
        s(&d["spec"]["template"]["spec"]["containers"][0]["command"][0]).ends_with("/worker")
    }));
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(s(&trigger["type"]), "redis-streams");
    let keys =
        longhaul_queue::KeySpace::new(&configmap["LONGHAUL_QUEUE_PREFIX"], &configmap["LONGHAUL_QUEUE"])
            .expect("keys");
    assert_eq!(s(&trigger["metadata"]["stream"]), keys.jobs());
    assert_eq!(s(&trigger["metadata"]["consumerGroup"]), longhaul_queue::QueueConfig::default().group);
    assert!(s(&trigger["metadata"]["lagCount"]).parse::<u32>().is_ok());
}
