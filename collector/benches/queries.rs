//! Query latency with a realistic customer base: 100k customer records, 1,000 open incidents,
//! one customer with 24 hours of one-minute windows and 10k others with a recent window.
//! Times the API as the NOC uses it (HTTP round trips to an in-process server) on SQLite, and
//! on PostgreSQL when `EDGEPROBE_POSTGRES_URL` (or the local server) answers.
//!
//! Run: `cargo bench -p edgeprobe-collector --bench queries`

use edgeprobe_collector::config::CollectorConfig;
use edgeprobe_collector::customers::Customer;
use edgeprobe_collector::http::state::ApiState;
use edgeprobe_collector::metrics::Metrics;
use edgeprobe_collector::model::{Incident, IncidentKind};
use edgeprobe_collector::router;
use edgeprobe_collector::store::Store;
use edgeprobe_collector::testing;
use edgeprobe_wire::Report;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CUSTOMERS: usize = 100_000;
const INCIDENTS: usize = 1_000;
const OTHERS_WITH_DATA: usize = 10_000;

fn customer(i: usize) -> Customer {
    Customer {
        subscriber_id: format!("line-{i:06}"),
        segment: ["residential", "business", "premium"][i % 3].into(),
        plan: "fiber-300".into(),
        region: format!("region-{}", i % 20),
        access_node: format!("OLT-{}", i % 2000),
        monthly_value: 30.0 + (i % 90) as f64,
        contact_opt_out: i % 17 == 0,
        ..testing::customer(&format!("C-{i:06}"))
    }
}

fn load(store: &mut Store) -> Duration {
    let started = Instant::now();
    let customers: Vec<Customer> = (0..CUSTOMERS).map(customer).collect();
    for chunk in customers.chunks(5000) {
        store.upsert_customers(chunk, 0).unwrap();
    }
    let base = testing::golden_report("report_v1.json");
    let now = edgeprobe_collector::clock::now_ms() / 60_000 * 60_000;
    let mut reports = Vec::new();
    for w in 0..1440u64 {
        let mut r = base.clone();
        r.agent_id = "gw-000000".into();
        r.seq = w;
        r.window_start = now as u64 - (1440 - w) * 60_000;
        r.window_end = r.window_start + 60_000;
        r.subscribers[0].subscriber = "line-000000".into();
        reports.push(r);
    }
    for i in 1..=OTHERS_WITH_DATA {
        let mut r = base.clone();
        r.agent_id = format!("gw-{i:06}");
        r.window_start = now as u64 - 60_000;
        r.window_end = now as u64;
        r.subscribers[0].subscriber = format!("line-{i:06}");
        reports.push(r);
    }
    for chunk in reports.chunks(500) {
        let refs: Vec<&Report> = chunk.iter().collect();
        store.store_reports(&refs, now).unwrap();
    }
    for n in 0..INCIDENTS {
        let members: Vec<String> = (0..50).map(|k| format!("C-{:06}", (n * 50 + k) % CUSTOMERS)).collect();
        let mut incident = Incident {
            id: 0,
            kind: if n % 10 == 0 { IncidentKind::Service } else { IncidentKind::AccessNode },
            scope: BTreeMap::from([("access_node".to_string(), format!("OLT-{n}"))]),
            state: "open".into(),
            severity: ["critical", "major", "minor"][n % 3].into(),
            opened_at: Some(now),
            resolved_at: None,
            first_window: now,
            last_window: now,
            bad_windows: 3,
            good_windows: 0,
            metric: "connect_network".into(),
            evidence: serde_json::json!({"metric": "connect_network", "median_value": 180.0}),
            probable_cause: "3 of 3 measured customers behind access node OLT have slow connects".into(),
            affected_customers: members.len() as i64,
            customers: members,
            value_at_risk: 2500.0,
            acked_at: None,
            acked_by: None,
        };
        store.save_incident(&mut incident).unwrap();
    }
    started.elapsed()
}

fn time_get(base: &str, path: &str, runs: usize) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let body = ureq::get(&format!("{base}{path}")).call().unwrap().into_string().unwrap();
        times.push(started.elapsed());
        bytes = body.len();
    }
    times.sort();
    (times[runs / 2], times[runs - 1], bytes)
}

fn bench(label: &str, url: &str) {
    let mut store = Store::open(url).unwrap();
    let loaded = load(&mut store);
    let reader = Store::open(url).unwrap();
    let state = Arc::new(ApiState::new(
        reader,
        CollectorConfig::default(),
        Arc::new(Metrics::default()),
        Default::default(),
        tokio::sync::watch::channel(0).1,
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, router(state)).await });
    println!(
        "{label}: loaded {CUSTOMERS} customers, {} reports, {INCIDENTS} incidents in {:.1} s",
        1440 + OTHERS_WITH_DATA,
        loaded.as_secs_f64()
    );
    // The API, then the console's pages (server-rendered HTML, plots included).
    let paths = [
        "/api/v1/incidents?state=open",
        "/api/v1/customers/C-000000",
        "/api/v1/incidents/500",
        "/",
        "/incidents/500",
        "/customers/C-000000",
        "/history",
    ];
    for path in paths {
        let (p50, max, bytes) = time_get(&base, path, 20);
        println!(
            "{label}: GET {path:<32} p50 {:>7.2} ms  max {:>7.2} ms  ({bytes} bytes)",
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    // The same pages in a browser, where one is installed (node, Chromium, npm ci in tests/browser).
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if browser.join("node_modules/playwright-core").exists() && std::path::Path::new("/usr/bin/chromium").exists() {
        let out = std::process::Command::new("node")
            .arg(browser.join("render_bench.mjs"))
            .args([base.as_str(), "/", "/incidents/500", "/customers/C-000000"])
            .output();
        match out {
            Ok(o) => {
                print!("{}", String::from_utf8_lossy(&o.stdout).replace("chromium:", &format!("{label}: chromium")))
            }
            Err(e) => println!("{label}: chromium skipped ({e})"),
        }
    } else {
        println!("{label}: chromium skipped (needs /usr/bin/chromium and npm ci in tests/browser)");
    }
    let since = edgeprobe_collector::clock::now_ms() - 86_400_000;
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..20 {
        let started = Instant::now();
        rows = store.subscriber_samples("line-000000", since).unwrap().len();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{label}: 24-hour series of one customer ({rows} histograms)  p50 {:.2} ms  max {:.2} ms",
        times[10].as_secs_f64() * 1e3,
        times[19].as_secs_f64() * 1e3
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("edgeprobe-bench-queries-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    bench("sqlite", dir.to_str().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let admin = std::env::var("EDGEPROBE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match postgres::Client::connect(&admin, postgres::NoTls) {
        Ok(mut client) => {
            let name = format!("edgeprobe_bench_{}", std::process::id());
            client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            bench("postgres", &format!("{base}/{name}"));
            let _ = client.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
        }
        Err(e) => println!("postgres: skipped ({e})"),
    }
}
