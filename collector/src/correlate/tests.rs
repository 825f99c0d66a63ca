//! Correlation on windows built here, through a real store.

use super::*;
use edgeprobe_wire::histogram::{new_histogram, record};
use edgeprobe_wire::{CaptureHealth, Counters, Metrics, Report, SubscriberReport, WireHistogram};
use serde_json::json;

const WINDOW: i64 = 60_000;

fn customer(id: &str, node: &str, region: &str) -> Customer {
    Customer { region: region.into(), access_node: node.into(), ..crate::testing::customer(id) }
}

fn line(id: &str, network_ms: u64) -> SubscriberReport {
    let mut h = new_histogram();
    let mut home = new_histogram();
    for _ in 0..10 {
        record(&mut h, network_ms * 1000);
        record(&mut home, 5_000);
    }
    let metrics = Metrics {
        connect_network: Some(WireHistogram::from_histogram(&h)),
        connect_home: Some(WireHistogram::from_histogram(&home)),
        ..Metrics::default()
    };
    SubscriberReport {
        subscriber: format!("sub-{id}"),
        metrics,
        counters: Counters { connects: 10, ..Counters::default() },
        services: vec![],
        journeys: vec![],
        resolvers: vec![],
        dns_late: None,
    }
}

/// Stores one window in which each (customer, network ms) line was measured, and evaluates it.
fn window(store: &mut Store, config: &CollectorConfig, n: i64, lines: &[(&str, u64)]) {
    let lines: Vec<SubscriberReport> = lines.iter().map(|(id, ms)| line(id, *ms)).collect();
    window_of(store, config, n, lines);
}

/// A healthy line that ran the `portal` journey 5 times, `failed` of them failing at `step`.
fn journey_line(id: &str, failed: u64, step: &str) -> SubscriberReport {
    let mut l = line(id, 20);
    let mut h = new_histogram();
    for _ in failed..5 {
        record(&mut h, 300_000);
    }
    l.journeys.push(edgeprobe_wire::JourneyReport {
        journey: "portal".into(),
        phase: "assurance".into(),
        latency: (failed < 5).then(|| WireHistogram::from_histogram(&h)),
        ok: 5 - failed,
        failed,
        failed_steps: if failed > 0 { [(step.to_string(), failed)].into() } else { Default::default() },
        ..Default::default()
    });
    l
}

/// Agent `agent`'s report `seq` of window `n`.
fn report(agent: &str, seq: u64, n: i64, lines: Vec<SubscriberReport>) -> Report {
    Report {
        v: edgeprobe_wire::SCHEMA_VERSION,
        agent_id: agent.into(),
        boot_id: "b".into(),
        seq,
        window_start: (n * WINDOW) as u64,
        window_end: ((n + 1) * WINDOW) as u64,
        capture: CaptureHealth::default(),
        subscribers: lines,
        agent: None,
        part: 0,
        parts: 0,
    }
}

fn window_of(store: &mut Store, config: &CollectorConfig, n: i64, lines: Vec<SubscriberReport>) {
    store.store_reports(&[&report("edge-1", n as u64, n, lines)], 0).unwrap();
    evaluate_window(store, config, (n * WINDOW, (n + 1) * WINDOW), n * WINDOW + WINDOW).unwrap().unwrap();
}

fn setup(tag: &str) -> (Store, CollectorConfig, std::path::PathBuf) {
    let dir = crate::testing::test_dir(&format!("correlate-{tag}"));
    let mut store = Store::open(dir.to_str().unwrap()).unwrap();
    let customers = [
        customer("a1", "OLT-1", "north"),
        customer("a2", "OLT-1", "north"),
        customer("a3", "OLT-1", "north"),
        customer("b1", "OLT-2", "north"),
        customer("b2", "OLT-2", "north"),
        customer("c1", "OLT-3", "south"),
        customer("c2", "OLT-3", "south"),
    ];
    store.upsert_customers(&customers, 0).unwrap();
    (store, CollectorConfig::default(), dir)
}

fn summary(store: &mut Store) -> Vec<(String, String, String, Vec<String>)> {
    let mut all: Vec<_> = store
        .incidents("all", 100)
        .unwrap()
        .into_iter()
        .map(|i| (i.kind.as_str().to_string(), i.scope.values().cloned().collect(), i.state, i.customers))
        .collect();
    all.sort();
    all
}

/// A healthy line whose DNS went to `resolvers`: (address, answers, each in ms).
fn dns_line(id: &str, resolvers: &[(&str, u64, u64)]) -> SubscriberReport {
    let mut l = line(id, 20);
    let mut all = new_histogram();
    for (ip, n, ms) in resolvers {
        let mut h = new_histogram();
        for _ in 0..*n {
            record(&mut h, ms * 1000);
            record(&mut all, ms * 1000);
        }
        l.resolvers.push(edgeprobe_wire::ResolverReport {
            resolver: ip.to_string(),
            dns: [("NOERROR".to_string(), *n)].into(),
            latency: (resolvers.len() > 1).then(|| WireHistogram::from_histogram(&h)),
        });
        *l.counters.dns.entry("NOERROR".into()).or_default() += n;
    }
    l.metrics.dns = Some(WireHistogram::from_histogram(&all));
    l
}

#[test]
fn a_failing_resolver_is_named_and_only_its_customers_are_in_it() {
    let (mut store, config, dir) = setup("resolver");
    let (slow, fast) = ("192.0.2.53", "192.0.2.54");
    for n in 1..=3 {
        let lines = vec![
            dns_line("a1", &[(slow, 10, 400), (fast, 2, 10)]),
            dns_line("b1", &[(slow, 10, 400), (fast, 2, 10)]),
            dns_line("c1", &[(slow, 10, 400)]),
            dns_line("a2", &[(fast, 12, 10)]),
            dns_line("b2", &[(fast, 12, 10)]),
            dns_line("c2", &[(fast, 12, 10)]),
        ];
        window_of(&mut store, &config, n, lines);
    }
    let all = summary(&mut store);
    assert_eq!(all, vec![("resolver".into(), slow.into(), "open".into(), vec!["a1".into(), "b1".into(), "c1".into()])]);
    let incident = store.incidents("open", 10).unwrap().remove(0);
    assert!(incident.probable_cause.contains("resolver 192.0.2.53 is failing"), "{}", incident.probable_cause);
    assert!(incident.probable_cause.contains("3 of the 3 customers who asked it"), "{}", incident.probable_cause);

    // Agents that do not name resolvers: the same failure, unnamed.
    let (mut store, config, dir2) = setup("resolver-unnamed");
    for n in 1..=3 {
        let mut lines = vec![
            dns_line("a1", &[(slow, 10, 400)]),
            dns_line("b1", &[(slow, 10, 400)]),
            dns_line("c1", &[(slow, 10, 400)]),
            dns_line("a2", &[(fast, 12, 10)]),
        ];
        lines.iter_mut().for_each(|l| l.resolvers.clear());
        window_of(&mut store, &config, n, lines);
    }
    let all = summary(&mut store);
    assert_eq!(
        all,
        vec![(
            "resolver".into(),
            "subscriber resolvers".into(),
            "open".into(),
            vec!["a1".into(), "b1".into(), "c1".into()]
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn hysteresis_opens_after_n_bad_windows_and_resolves_after_m_good_ones() {
    let (mut store, config, dir) = setup("hysteresis");
    let bad = [("a1", 200), ("a2", 210), ("a3", 20), ("b1", 20), ("b2", 20)];
    let good = [("a1", 20), ("a2", 20), ("a3", 20), ("b1", 20), ("b2", 20)];
    for n in 1..=2 {
        window(&mut store, &config, n, &bad);
    }
    let node = |s: &str| {
        vec![("access_node".to_string(), "OLT-1".to_string(), s.to_string(), vec!["a1".to_string(), "a2".to_string()])]
    };
    assert_eq!(summary(&mut store), node("pending"));
    window(&mut store, &config, 3, &bad);
    assert_eq!(summary(&mut store), node("open"));
    for n in 4..=5 {
        window(&mut store, &config, n, &good);
        assert_eq!(summary(&mut store), node("open"), "window {n}");
    }
    window(&mut store, &config, 6, &good);
    assert_eq!(summary(&mut store), node("resolved"));
    // Actions were suggested while open, and ended when it resolved.
    let actions = store.actions(None, false, 100).unwrap();
    assert!(actions.iter().any(|a| a.customer_id == "a1" && a.action == "outage_notice"));
    assert!(actions.iter().all(|a| a.ended_ms.is_some()), "{actions:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gap_or_a_good_window_ends_a_pending_incident() {
    let (mut store, config, dir) = setup("pending");
    let bad = [("a1", 200), ("a2", 210), ("a3", 220)];
    window(&mut store, &config, 1, &bad);
    window(&mut store, &config, 2, &bad);
    window(&mut store, &config, 4, &[("b1", 20), ("b2", 20)]);
    assert_eq!(summary(&mut store), vec![], "a pending incident needs consecutive windows");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_bad_customer_is_a_customer_incident_and_nodes_failing_together_a_region() {
    let (mut store, config, dir) = setup("scopes");
    let lines = [("a1", 300), ("a2", 20), ("a3", 20), ("c1", 20), ("c2", 20)];
    for n in 1..=3 {
        window(&mut store, &config, n, &lines);
    }
    assert_eq!(summary(&mut store), vec![("customer".into(), "a1".into(), "open".into(), vec!["a1".into()])]);

    let (mut store, config, dir2) = setup("region");
    let lines = [("a1", 300), ("a2", 300), ("b1", 300), ("b2", 300), ("c1", 20), ("c2", 20)];
    for n in 1..=3 {
        window(&mut store, &config, n, &lines);
    }
    let all = summary(&mut store);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].0.as_str(), all[0].1.as_str()), ("region", "north"));
    assert_eq!(all[0].3, ["a1", "a2", "b1", "b2"]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn a_journey_failing_behind_one_node_is_that_node_and_across_nodes_the_journey() {
    let (mut store, config, dir) = setup("journey-node");
    for n in 1..=3 {
        let lines = vec![
            journey_line("a1", 5, "connect"),
            journey_line("a2", 4, "connect"),
            journey_line("a3", 0, ""),
            journey_line("b1", 0, ""),
            journey_line("b2", 1, "tls"),
        ];
        window_of(&mut store, &config, n, lines);
    }
    let all = store.incidents("all", 10).unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    let i = &all[0];
    assert_eq!((i.kind, i.state.as_str(), i.metric.as_str()), (IncidentKind::AccessNode, "open", "journey:portal"));
    assert_eq!(i.customers, ["a1", "a2"]);
    assert_eq!((&i.evidence["journey"], &i.evidence["step"]), (&json!("portal"), &json!("connect")));
    assert_eq!(i.evidence["median_value"], json!(1.0), "{}", i.evidence);
    assert!(i.probable_cause.contains("\"portal\" journey (most at step \"connect\")"), "{}", i.probable_cause);
    assert!(i.probable_cause.contains("OLT-1"), "{}", i.probable_cause);

    let (mut store, config, dir2) = setup("journey-wide");
    for n in 1..=3 {
        let lines = vec![
            journey_line("a1", 5, "tls"),
            journey_line("a2", 5, "tls"),
            journey_line("b1", 4, "tls"),
            journey_line("c1", 5, "tls"),
            journey_line("c2", 0, ""),
        ];
        window_of(&mut store, &config, n, lines);
    }
    let all = store.incidents("all", 10).unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    let i = &all[0];
    assert_eq!((i.kind, i.scope.get("journey").map(String::as_str)), (IncidentKind::Service, Some("portal")));
    assert_eq!(i.customers, ["a1", "a2", "b1", "c1"]);
    assert_eq!(i.evidence["step"], json!("tls"));
    assert!(i.probable_cause.contains("across 3 access nodes"), "{}", i.probable_cause);
    // Good windows resolve it: the journey is measured and fine again.
    for n in 4..=6 {
        let lines = ["a1", "a2", "b1", "c1", "c2"].iter().map(|id| journey_line(id, 0, "")).collect();
        window_of(&mut store, &config, n, lines);
    }
    assert_eq!(store.incidents("resolved", 10).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn journey_rules_act_on_a_customers_own_failures_and_groups_get_figures() {
    let (mut store, mut config, dir) = setup("journey-rules");
    let mut premium = customer("a1", "OLT-1", "north");
    premium.segment = "premium".into();
    let quiet =
        Customer { customer_id: "a2".into(), subscriber_id: "sub-a2".into(), contact_opt_out: true, ..premium.clone() };
    store.upsert_customers(&[premium, quiet], 0).unwrap();
    config.actions.journey_rules = vec![crate::config::JourneyRule {
        journey: "portal".into(),
        failures: 3,
        within_hours: 24,
        segments: vec!["premium".into()],
        plans: vec![],
        action: "service_ticket".into(),
        contact: true,
    }];
    // One failed episode in five per window: 20%, not enough for an incident.
    let lines = || ["a1", "a2", "a3"].iter().map(|id| journey_line(id, 1, "tls")).collect::<Vec<_>>();
    for n in 1..=2 {
        window_of(&mut store, &config, n, lines());
    }
    assert!(store.actions(None, false, 10).unwrap().is_empty(), "two failures are below the rule");
    for n in 3..=4 {
        window_of(&mut store, &config, n, lines());
    }
    let actions = store.actions(None, false, 10).unwrap();
    assert_eq!(actions.len(), 2, "{actions:#?}");
    let a1 = actions.iter().find(|a| a.customer_id == "a1").unwrap();
    assert_eq!((a1.action.as_str(), a1.contact, a1.incident_id), ("service_ticket", true, None));
    assert_eq!(a1.rule.as_deref(), Some("journey:portal"));
    assert!(a1.reason.contains("3 \"portal\" journeys failed"), "{}", a1.reason);
    let a2 = actions.iter().find(|a| a.customer_id == "a2").unwrap();
    assert_eq!(a2.action, "none");
    assert!(a2.reason.contains("opted out"), "{}", a2.reason);
    assert!(store.incidents("all", 10).unwrap().is_empty());

    // Four windows of three customers with five episodes each, one failed at "tls".
    let stats = store.journey_stats("access_node", 0, i64::MAX).unwrap();
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!((s.group.as_str(), s.customers, s.ok, s.failed), ("OLT-1", 3, 48, 12));
    assert_eq!(s.failed_steps, [("tls".to_string(), 12)].into());
    let h = s.latency.as_ref().unwrap();
    assert_eq!(h.len(), 48);
    assert!(h.equivalent(h.value_at_quantile(0.9), 300_000));
    assert_eq!(s.to_json()["success_rate"], json!(0.8));
    let segments = store.journey_stats("segment", 2 * WINDOW, 3 * WINDOW).unwrap();
    let by: BTreeMap<&str, u64> = segments.iter().map(|s| (s.group.as_str(), s.ok + s.failed)).collect();
    assert_eq!(by, BTreeMap::from([("premium", 10), ("residential", 5)]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_late_report_counts_in_its_windows_journey_figures() {
    let (mut store, config, dir) = setup("journey-late");
    window_of(&mut store, &config, 1, vec![journey_line("a1", 1, "tls")]);
    let before = store.journey_stats("all", 0, i64::MAX).unwrap();
    assert_eq!((before[0].ok, before[0].failed), (4, 1));
    let late = report("edge-2", 0, 1, vec![journey_line("b1", 0, "")]);
    assert_eq!(store.store_reports(&[&late], 0).unwrap(), [crate::store::Stored::AfterEvaluation]);
    refresh_journey_stats(&mut store, WINDOW).unwrap();
    let after = store.journey_stats("all", 0, i64::MAX).unwrap();
    assert_eq!((after.len(), after[0].ok, after[0].failed, after[0].customers), (1, 9, 1, 2));
    let nodes = store.journey_stats("access_node", 0, i64::MAX).unwrap();
    assert_eq!(nodes.iter().map(|s| s.group.as_str()).collect::<Vec<_>>(), ["OLT-1", "OLT-2"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_agent_speaks_only_for_the_lines_no_other_agent_reported_since() {
    let (mut store, config, dir) = setup("moved");
    // gw-1 served a1 and a2; a2's gateway was then swapped for gw-2.
    store.store_reports(&[&report("gw-1", 0, 1, vec![line("a1", 20), line("a2", 20)])], 0).unwrap();
    store.store_reports(&[&report("gw-2", 0, 2, vec![line("a2", 20)])], 0).unwrap();
    // A report of gw-1's from before the swap, arriving late, changes nothing.
    store.store_reports(&[&report("gw-1", 1, 0, vec![line("a2", 20)])], 0).unwrap();
    let ids = |cs: Vec<Customer>| cs.into_iter().map(|c| c.customer_id).collect::<Vec<_>>();
    assert_eq!(ids(store.agent_customers("gw-1").unwrap()), ["a1"]);
    assert_eq!(ids(store.agent_customers("gw-2").unwrap()), ["a2"]);

    let state = |online: bool| -> crate::model::AgentState {
        serde_json::from_value(json!({"online": online, "boot_id": "b"})).unwrap()
    };
    let now = 10 * WINDOW;
    store.record_state("gw-1", &state(false), now, false).unwrap();
    store.record_state("gw-2", &state(true), now, false).unwrap();
    evaluate_agents(&mut store, &config, now + config.correlation.agent_offline_after_secs as i64 * 1000).unwrap();
    let offline = summary(&mut store);
    assert_eq!(offline, [("agents_offline".into(), "OLT-1".into(), "open".into(), vec!["a1".into()])]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_forgets_the_lines_an_agent_no_longer_serves() {
    let (mut store, _, dir) = setup("retention-lines");
    // gw-1 served a1 and later only a2; gw-2 fell silent after a3; b1 moved from gw-3 to gw-4.
    store.store_reports(&[&report("gw-1", 0, 1, vec![line("a1", 20), line("a2", 20)])], 0).unwrap();
    store.store_reports(&[&report("gw-1", 1, 20, vec![line("a2", 20)])], 0).unwrap();
    store.store_reports(&[&report("gw-2", 0, 1, vec![line("a3", 20)])], 0).unwrap();
    store.store_reports(&[&report("gw-3", 0, 1, vec![line("b1", 20)])], 0).unwrap();
    store.store_reports(&[&report("gw-4", 0, 2, vec![line("b1", 20)])], 0).unwrap();
    let ids = |store: &mut Store, agent: &str| {
        store.agent_customers(agent).unwrap().into_iter().map(|c| c.customer_id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&mut store, "gw-1"), ["a1", "a2"]);
    assert_eq!(store.rows("agent_subscribers"), 5);
    store.prune(10 * WINDOW).unwrap();
    assert_eq!(ids(&mut store, "gw-1"), ["a2"], "not reported by gw-1 for the whole retention");
    assert_eq!(ids(&mut store, "gw-2"), ["a3"], "a silent agent keeps its lines");
    assert_eq!(ids(&mut store, "gw-4"), ["b1"]);
    assert_eq!(store.rows("agent_subscribers"), 3, "gw-3's pair for b1 is gone too");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_drops_old_windows_and_resolved_incidents_only() {
    let (mut store, config, dir) = setup("retention");
    let bad = [("a1", 200), ("a2", 210), ("a3", 220)];
    for n in 1..=3 {
        window(&mut store, &config, n, &bad);
    }
    for n in 4..=6 {
        window(&mut store, &config, n, &[("a1", 20), ("a2", 20), ("a3", 20)]);
    }
    window(&mut store, &config, 20, &bad);
    assert_eq!(store.incidents("resolved", 10).unwrap().len(), 1);
    let resolved_at = store.incidents("resolved", 10).unwrap()[0].resolved_at.unwrap();
    // Everything before window 10 goes, and the incident that resolved before it.
    store.prune((10 * WINDOW).max(resolved_at + 1)).unwrap();
    assert!(store.incidents("resolved", 10).unwrap().is_empty());
    assert_eq!(store.incidents("pending", 10).unwrap().len(), 1, "the newer pending incident stays");
    assert!(store.subscriber_samples("sub-a1", 0).unwrap().iter().all(|s| s.window_start >= 10 * WINDOW));
    assert_eq!(store.subscriber_samples("sub-a1", 0).unwrap().len(), 2, "window 20 is kept");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A line healthy over TCP whose QUIC handshakes took `hello_ms` on the network side and
/// `home_ms` on the home side.
fn quic_line(id: &str, hello_ms: u64, home_ms: u64) -> SubscriberReport {
    let mut l = line(id, 20);
    let of = |ms: u64| {
        let mut h = new_histogram();
        for _ in 0..10 {
            record(&mut h, ms * 1000);
        }
        Some(WireHistogram::from_histogram(&h))
    };
    l.metrics.quic_hello = of(hello_ms);
    l.metrics.quic_home = of(home_ms);
    l.metrics.quic_handshake = of(hello_ms + home_ms + 5);
    l.counters.quic_ok = 10;
    l
}

#[test]
fn quic_handshakes_are_judged_and_split_like_tcp_connects() {
    // Slow on the network side for every customer behind one node: that node, on QUIC's figure.
    let (mut store, config, dir) = setup("quic-node");
    for n in 1..=3 {
        let lines = ["a1", "a2", "a3", "b1", "c1"]
            .iter()
            .map(|id| if id.starts_with('a') { quic_line(id, 600, 5) } else { quic_line(id, 20, 5) })
            .collect();
        window_of(&mut store, &config, n, lines);
    }
    let all = summary(&mut store);
    assert_eq!(
        all,
        vec![("access_node".into(), "OLT-1".into(), "open".into(), vec!["a1".into(), "a2".into(), "a3".into()])]
    );
    let incident = &store.incidents("all", 10).unwrap()[0];
    assert!(["quic_hello", "quic_handshake"].contains(&incident.metric.as_str()), "{incident:?}");

    // Slow on the home side only, the network side fine: the customer's home network.
    let (mut store, config, dir2) = setup("quic-home");
    for n in 1..=3 {
        window_of(
            &mut store,
            &config,
            n,
            vec![quic_line("a1", 20, 200), quic_line("a2", 20, 5), quic_line("c1", 20, 5)],
        );
    }
    assert_eq!(summary(&mut store), vec![("home_network".into(), "a1".into(), "open".into(), vec!["a1".into()])]);
    let incident = &store.incidents("all", 10).unwrap()[0];
    assert_eq!(incident.metric, "quic_home", "{incident:?}");
    assert!(incident.probable_cause.contains("QUIC handshake"), "{}", incident.probable_cause);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// A healthy line whose round trips were `idle` ms with the line idle and `loaded` ms under
/// load, home side then network side; 30 of each a side.
fn rtt_line(id: &str, home: (u64, u64), network: (u64, u64)) -> SubscriberReport {
    let mut l = line(id, 20);
    let of = |values: &[u64]| {
        let mut h = new_histogram();
        for v in values {
            for _ in 0..30 {
                record(&mut h, v * 1000);
            }
        }
        Some(WireHistogram::from_histogram(&h))
    };
    l.metrics.rtt_home = of(&[home.0, home.1]);
    l.metrics.rtt_home_loaded = of(&[home.1]);
    l.metrics.rtt_network = of(&[network.0, network.1]);
    l.metrics.rtt_network_loaded = of(&[network.1]);
    l.counters.packets_up = 1000;
    l.counters.retrans_up = 5;
    l
}

#[test]
fn bufferbloat_is_told_by_side_and_a_node_whose_lines_all_bloat_is_one_incident() {
    let (mut store, config, dir) = setup("bloat");
    for n in 1..=3 {
        let lines = vec![
            rtt_line("a1", (10, 12), (40, 400)),
            rtt_line("a2", (10, 12), (40, 350)),
            rtt_line("a3", (10, 12), (40, 500)),
            rtt_line("b1", (10, 300), (40, 45)),
            rtt_line("b2", (10, 15), (40, 45)),
            line("c1", 20),
        ];
        window_of(&mut store, &config, n, lines);
    }
    assert_eq!(
        summary(&mut store),
        vec![
            ("bufferbloat".into(), "OLT-1access".into(), "open".into(), vec!["a1".into(), "a2".into(), "a3".into()]),
            ("bufferbloat".into(), "b1home".into(), "open".into(), vec!["b1".into()]),
        ]
    );
    let actions = store.actions(None, false, 100).unwrap();
    let of = |id: &str| actions.iter().find(|a| a.customer_id == id && a.action != "hold_marketing").unwrap();
    assert_eq!(of("b1").action, "wifi_help");
    assert_eq!(of("a1").action, "none", "the node's queue, nothing on the line: {}", of("a1").reason);

    // The figures: baseline from the idle samples, the rise from the loaded ones, QoO by profile.
    let b1 = store.line_quality("b1", 0).unwrap();
    assert_eq!(b1.len(), 3);
    let q = &b1[2];
    assert_eq!(q.home.baseline_us.map(|v| v / 1000), Some(10));
    assert_eq!(q.home.loaded_p90_us.map(|v| v / 1000), Some(300));
    assert!(q.home.bloated && !q.network.bloated);
    assert_eq!(q.loss_ratio, Some(0.005));
    assert!(q.qoo["online_gaming"] < q.qoo["video_streaming"], "{:?}", q.qoo);
    assert!(q.qoo["video_conferencing"] < q.qoo["video_streaming"], "{:?}", q.qoo);
    // A lower idle window later lowers the baseline at once.
    window_of(&mut store, &config, 4, vec![rtt_line("b1", (6, 8), (30, 32))]);
    let last = store.line_quality("b1", 0).unwrap().pop().unwrap();
    assert_eq!(last.home.baseline_us.map(|v| v / 1000), Some(6));
    // A window without load shows no queue and counts as neither: the incident stays open.
    window_of(&mut store, &config, 5, vec![line("b1", 20)]);
    assert!(summary(&mut store).iter().any(|s| s.1 == "b1home" && s.2 == "open"));
    let _ = std::fs::remove_dir_all(&dir);
}
