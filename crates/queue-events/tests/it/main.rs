//! queue-events on real Redis, built as the binary builds it: events handled once across replicas,
//! every queue it is given tailed, metric values labelled by queue, `/metrics`.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use clap::Parser as _;
use longhaul_queue::{Event, EventKind, now_ms};
use longhaul_queue_events::EventMetrics;
use longhaul_queue_events::startup::{Application, Config};
use longhaul_service::telemetry::{providers, render_prometheus};
use longhaul_testkit::{TestQueue, job_entry, wait_until};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// A metrics pipeline of its own (no global state), rendered as Prometheus text.
fn metrics() -> (EventMetrics, prometheus::Registry, SdkMeterProvider) {
    let (_, provider, registry) = providers("queue-events-test", None, true).expect("providers");
    let metrics = EventMetrics::new(&provider.meter("test"));
    (metrics, registry.expect("registry"), provider)
}

/// The value of the series `name` whose labels contain every `label`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn event(kind: EventKind, i: usize) -> Event {
    let mut e = Event::new(kind, &format!("job_{i:032x}"), "acme", 1, now_ms());
    e.total_ms = Some(1500);
    e.run_ms = Some(40);
    e
}

/// queue-events as the binary builds it (from flags, on `q`'s key prefix, admin on a port of its
/// own), with a metrics pipeline of its own; `consumer` is its name in the group. It tails the
/// default queues (`triage` — `q`'s — and `summarize`).
async fn build(q: &TestQueue, consumer: &str) -> (Application, prometheus::Registry, SdkMeterProvider) {
    build_with(q, consumer, &[]).await
}

/// [`build`] with `extra` flags.
async fn build_with(
    q: &TestQueue,
    consumer: &str,
    extra: &[&str],
) -> (Application, prometheus::Registry, SdkMeterProvider) {
    let (_, provider, registry) = providers("queue-events-test", None, true).expect("providers");
    let flags = ["--redis-url", &q.url, "--queue-prefix", &q.prefix, "--consumer-name", consumer];
    let args = ["queue-events"].into_iter().chain(flags).chain(BUILD_FLAGS).chain(extra.iter().copied());
    let config = Config::try_parse_from(args).expect("flags");
    let registry = registry.expect("registry");
    let app = Application::build(config, &provider.meter("test"), registry.clone()).await.expect("build");
    (app, registry, provider)
}

const BUILD_FLAGS: [&str; 4] = ["--batch", "16", "--admin-addr", "127.0.0.1:0"];

fn completed_count(registry: &prometheus::Registry) -> f64 {
    value(&render_prometheus(registry), "longhaul_job_events_total", &["event=\"completed\""]).unwrap_or(0.0)
}

/// The `queue` label of queue `name`, as `/metrics` renders it.
fn queue_label(name: &str) -> String {
    format!("queue=\"{name}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_handle_each_event_once() {
    let q = TestQueue::new(|_| {}).await;
    for i in 0..300 {
        q.publish(&event(EventKind::Completed, i)).await.expect("publish");
    }
    let stop = CancellationToken::new();
    let (a, r1, _p1) = build(&q, "qe-a").await;
    let (b, r2, _p2) = build(&q, "qe-b").await;
    let a = tokio::spawn(a.run_until_stopped(stop.clone()));
    let b = tokio::spawn(b.run_until_stopped(stop.clone()));
    let total = wait_until(Duration::from_secs(10), "all events handled", async || {
        let n = completed_count(&r1) + completed_count(&r2);
        if n >= 300.0 { Ok(n) } else { Err(n) }
    })
    .await;
    // Pending is empty: everything handled was acknowledged.
    wait_until(Duration::from_secs(5), "events acknowledged", async || {
        let mut conn = q.raw().await;
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(q.keys().events())
            .arg("queue-events")
            .query_async(&mut conn)
            .await
            .expect("xpending");
        match summary.first() {
            Some(redis::Value::Int(0)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    stop.cancel();
    a.await.expect("replica a").expect("replica a stops cleanly");
    b.await.expect("replica b").expect("replica b stops cleanly");
    assert_eq!(total, 300.0, "each event counted exactly once across both replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_values_follow_the_events() {
    let (m, registry, _provider) = metrics();
    let mut kinds = vec![EventKind::Completed; 3];
    kinds.extend([
        EventKind::Failed,
        EventKind::Failed,
        EventKind::Retrying,
        EventKind::Stalled,
        EventKind::Alert,
    ]);
    kinds.extend([EventKind::Progress; 5]);
    for (i, kind) in kinds.into_iter().enumerate() {
        let mut e = event(kind, i);
        e.class = match kind {
            EventKind::Failed => Some("invalid".into()),
            EventKind::Retrying => Some("retryable".into()),
            EventKind::Alert => Some("alert".into()),
            _ => None,
        };
        m.record("triage", &e);
    }
    // Another queue's events and backlog are series of their own.
    m.record("summarize", &event(EventKind::Completed, 100));
    m.set_backlog(
        "triage",
        longhaul_queue::QueueStats {
            pending: 7,
            lag: Some(11),
            delayed: 2,
            dead_letters: 1,
            ..Default::default()
        },
    );
    m.set_backlog("summarize", longhaul_queue::QueueStats { pending: 5, ..Default::default() });
    let text = render_prometheus(&registry);
    let (triage, summarize) = (queue_label("triage"), queue_label("summarize"));
    let events = |queue: &str, event: &str, class: &str| {
        value(
            &text,
            "longhaul_job_events_total",
            &[queue, &format!("event=\"{event}\""), &format!("class=\"{class}\"")],
        )
    };
    assert_eq!(events(&triage, "completed", ""), Some(3.0), "{text}");
    assert_eq!(events(&triage, "failed", "invalid"), Some(2.0));
    assert_eq!(events(&triage, "retrying", "retryable"), Some(1.0));
    assert_eq!(events(&triage, "stalled", ""), Some(1.0));
    assert_eq!(events(&triage, "alert", "alert"), Some(1.0));
    assert_eq!(events(&triage, "progress", ""), None, "progress is not counted");
    assert_eq!(events(&summarize, "completed", ""), Some(1.0), "{text}");
    assert_eq!(events(&summarize, "failed", "invalid"), None);
    let total = [triage.as_str(), "event=\"completed\"", "kind=\"total\""];
    let count = value(&text, "longhaul_job_duration_seconds_count", &total);
    let sum = value(&text, "longhaul_job_duration_seconds_sum", &total);
    assert_eq!((count, sum), (Some(3.0), Some(4.5)));
    assert_eq!(
        value(
            &text,
            "longhaul_job_duration_seconds_count",
            &[&triage, "event=\"completed\"", "kind=\"run\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "longhaul_job_duration_seconds_count",
            &[&summarize, "event=\"completed\"", "kind=\"total\""]
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "longhaul_queue_pending", &[&triage]), Some(7.0));
    assert_eq!(value(&text, "longhaul_queue_lag", &[&triage]), Some(11.0));
    assert_eq!(value(&text, "longhaul_queue_delayed", &[&triage]), Some(2.0));
    assert_eq!(value(&text, "longhaul_queue_dead_letters", &[&triage]), Some(1.0));
    assert_eq!(value(&text, "longhaul_queue_pending", &[&summarize]), Some(5.0));
    assert_eq!(value(&text, "longhaul_queue_lag", &[&summarize]), Some(0.0), "unknown lag reads as 0");
    assert_eq!(value(&text, "longhaul_queue_delayed", &[&summarize]), Some(0.0));
}

/// The same known events through the SDK's in-memory exporter — what the OTLP exporter would send.
#[tokio::test]
async fn in_memory_exporter_sees_the_event_counts_durations_and_backlog() {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider =
        SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    let m = EventMetrics::new(&provider.meter("test"));
    for (i, kind) in [EventKind::Completed, EventKind::Completed, EventKind::Failed, EventKind::Progress]
        .into_iter()
        .enumerate()
    {
        let mut e = event(kind, i);
        e.class = (kind == EventKind::Failed).then(|| "invalid".to_owned());
        m.record("triage", &e);
    }
    m.set_backlog("triage", longhaul_queue::QueueStats { pending: 4, delayed: 9, ..Default::default() });
    provider.force_flush().expect("flush");

    let exported = exporter.get_finished_metrics().expect("metrics");
    let last = exported.last().expect("one export");
    let metric = |name: &str| {
        last.scope_metrics()
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("metric {name} exported"))
    };
    let has = |attrs: Vec<&opentelemetry::KeyValue>, key: &str, value: &str| {
        attrs.iter().any(|kv| kv.key.as_str() == key && kv.value.as_str() == value)
    };
    let AggregatedMetrics::U64(MetricData::Sum(events)) = metric("longhaul.job.events").data() else {
        panic!("events is a u64 sum");
    };
    let count = |event: &str, class: &str| {
        events
            .data_points()
            .find(|p| {
                has(p.attributes().collect(), "event", event) && has(p.attributes().collect(), "class", class)
            })
            .inspect(|p| assert!(has(p.attributes().collect(), "queue", "triage"), "labelled by queue"))
            .map(|p| p.value())
    };
    assert_eq!(count("completed", ""), Some(2));
    assert_eq!(count("failed", "invalid"), Some(1));
    assert_eq!(count("progress", ""), None, "progress is not counted");

    let AggregatedMetrics::F64(MetricData::Histogram(durations)) = metric("longhaul.job.duration").data()
    else {
        panic!("duration is an f64 histogram");
    };
    let total = durations
        .data_points()
        .find(|p| {
            has(p.attributes().collect(), "queue", "triage")
                && has(p.attributes().collect(), "event", "completed")
                && has(p.attributes().collect(), "kind", "total")
        })
        .expect("completed total durations");
    assert_eq!((total.count(), total.sum()), (2, 3.0), "two jobs of 1.5 s each");

    let gauge = |name: &str| match metric(name).data() {
        AggregatedMetrics::U64(MetricData::Gauge(g)) => {
            g.data_points().find(|p| has(p.attributes().collect(), "queue", "triage")).map(|p| p.value())
        }
        other => panic!("{name} is a u64 gauge: {other:?}"),
    };
    assert_eq!(gauge("longhaul.queue.pending"), Some(4));
    assert_eq!(gauge("longhaul.queue.delayed"), Some(9));
    assert_eq!(gauge("longhaul.queue.dead_letters"), Some(0));
}

/// The built application's admin routes: ready while Redis answers, and `/metrics` in Prometheus
/// text with what it has handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let q = TestQueue::new(|_| {}).await;
    q.publish(&event(EventKind::Completed, 1)).await.expect("publish");
    let (app, registry, _provider) = build(&q, "qe-m").await;
    let admin = app.admin_router();
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    wait_until(Duration::from_secs(10), "the event handled", async || {
        let n = completed_count(&registry);
        if n >= 1.0 { Ok(()) } else { Err(n) }
    })
    .await;
    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).expect("request");
    assert_eq!(admin.clone().oneshot(get("/readyz")).await.expect("call").status(), 200);
    let response = admin.oneshot(get("/metrics")).await.expect("call");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(text.contains("# TYPE longhaul_job_events_total counter"), "{text}");
    assert!(text.contains("# TYPE longhaul_job_duration_seconds histogram"), "{text}");
    assert_eq!(
        value(&text, "longhaul_job_events_total", &[&queue_label("triage"), "event=\"completed\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "longhaul_job_events_total", &[&queue_label("summarize")]),
        None,
        "no event on the other queue: {text}"
    );
    stop.cancel();
    running.await.expect("task").expect("a clean stop");
}

/// Built with `--queues a,b`, one service reads both queues' events streams and samples both
/// backlogs, each series labelled with its queue; a queue it was not given (`triage`, the test
/// queue's own) is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_given_is_tailed_and_labelled() {
    let q = TestQueue::new(|_| {}).await;
    let (a, b) = (q.sibling("a").expect("queue a"), q.sibling("b").expect("queue b"));
    for i in 0..3 {
        a.publish(&event(EventKind::Completed, i)).await.expect("publish a");
    }
    for i in 0..2 {
        let mut e = event(EventKind::Failed, 10 + i);
        e.class = Some("invalid".into());
        b.publish(&e).await.expect("publish b");
    }
    q.publish(&event(EventKind::Completed, 20)).await.expect("publish triage");
    // A backlog on `a` only: retries waiting for a due time far ahead.
    let due = now_ms() + 3_600_000;
    for i in 0..4 {
        assert!(a.enqueue_at(&job_entry(&format!("delayed-{i}")), due).await.expect("enqueue_at"));
    }

    let (app, registry, _provider) =
        build_with(&q, "qe-ab", &["--queues", "a,b", "--stats-every", "50ms"]).await;
    let admin = app.admin_router();
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    let (la, lb) = (queue_label("a"), queue_label("b"));
    let text = wait_until(Duration::from_secs(10), "both queues' events and backlogs", async || {
        let text = render_prometheus(&registry);
        let seen = (
            value(&text, "longhaul_job_events_total", &[&la, "event=\"completed\""]),
            value(&text, "longhaul_job_events_total", &[&lb, "event=\"failed\"", "class=\"invalid\""]),
            value(&text, "longhaul_queue_delayed", &[&la]),
            value(&text, "longhaul_queue_delayed", &[&lb]),
        );
        if seen == (Some(3.0), Some(2.0), Some(4.0), Some(0.0)) { Ok(text) } else { Err(seen) }
    })
    .await;

    // What /metrics serves says the same, and nothing of the queue it was not given.
    let request = Request::builder().uri("/metrics").body(Body::empty()).expect("request");
    let response = admin.oneshot(request).await.expect("call");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let served = String::from_utf8(body.to_vec()).expect("utf-8");
    assert_eq!(value(&served, "longhaul_queue_delayed", &[&la]), Some(4.0), "{served}");
    assert_eq!(value(&served, "longhaul_job_events_total", &[&lb, "event=\"failed\""]), Some(2.0));
    assert_eq!(value(&text, "longhaul_job_events_total", &[&lb, "event=\"completed\""]), None, "{text}");
    assert_eq!(value(&text, "longhaul_job_events_total", &[&la, "event=\"failed\""]), None, "{text}");
    let triage = queue_label("triage");
    assert!(!served.lines().any(|l| !l.starts_with('#') && l.contains(&triage)), "{served}");

    // Each tailed stream's events were acknowledged in the group.
    for queue in [&a, &b] {
        wait_until(Duration::from_secs(5), "events acknowledged", async || {
            let mut conn = q.raw().await;
            let summary: Vec<redis::Value> = redis::cmd("XPENDING")
                .arg(queue.keys().events())
                .arg("queue-events")
                .query_async(&mut conn)
                .await
                .expect("xpending");
            match summary.first() {
                Some(redis::Value::Int(0)) => Ok(()),
                other => Err(format!("{}: {other:?}", queue.name())),
            }
        })
        .await;
    }
    stop.cancel();
    running.await.expect("task").expect("a clean stop");
}
