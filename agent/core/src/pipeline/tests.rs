//! The pipeline end to end, on frames built here.

use super::*;
use crate::subscriber::Mode;
use crate::testing::{tcp_frame, udp_frame};
use edgeprobe_wire::SubscriberReport;

fn dns(response: bool) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, if response { 0x81 } else { 0x01 }, if response { 0x80 } else { 0 }];
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(b"\x06portal\x07example\x00\x00\x01\x00\x01");
    m
}

/// `dns(true)` with `rcode` and, if given, one A record.
fn dns_answer(rcode: u8, a: Option<[u8; 4]>) -> Vec<u8> {
    let mut m = dns(true);
    m[3] |= rcode;
    if let Some(ip) = a {
        m[7] = 1; // ANCOUNT
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(&ip);
    }
    m
}

#[test]
fn a_journey_counted_from_its_second_step_leaves_out_failed_lookups_only() {
    use crate::analyze::journey::{JourneyConfig, StepConfig};
    use crate::event::EpisodeOutcome;
    let journey = |name: &str, dns: &str, count_from_step: usize| JourneyConfig {
        name: name.into(),
        steps: vec![
            StepConfig { name: "dns".into(), dns: Some(dns.into()), ..Default::default() },
            StepConfig { name: "connect".into(), port: Some(80), ..Default::default() },
        ],
        count_from_step,
        ..portal_journey()
    };
    let episodes = |answer: Vec<u8>, refused: bool| {
        let journeys = vec![journey("any_site", "*", 2), journey("portal", "portal.example", 1)];
        let mut p = Probe::new(CoreConfig { journeys, ..CoreConfig::default() });
        let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
        let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
        p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
        p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &answer), 0);
        if refused {
            p.handle_frame(t(30), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x02, (100, 0), &[]), 0);
            p.handle_frame(t(50), LinkType::Ethernet, &tcp_frame((web, 80), (me, 50000), 0x14, (0, 101), &[]), 0);
        }
        p.finish(t(100));
        let mut out: Vec<(String, EpisodeOutcome, Option<String>)> = std::iter::from_fn(|| p.poll_event())
            .filter_map(|e| match e.detail {
                Detail::Episode(ep) => Some((ep.journey, ep.outcome, ep.failed_step)),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let failed = |journey: &str, step: &str| (journey.to_string(), EpisodeOutcome::Failed, Some(step.to_string()));
    // NXDOMAIN: a failed portal visit, but no visit to any site.
    assert_eq!(episodes(dns_answer(3, None), false), vec![failed("portal", "dns")]);
    // The server refuses the connection the lookup led to: a failure at step 2 counts for both.
    let refused = episodes(dns_answer(0, Some([203, 0, 113, 80])), true);
    assert_eq!(refused, vec![failed("any_site", "connect"), failed("portal", "connect")]);
}

/// A connect is held until the request names it; an episode whose deadline passes in
/// between has still taken the connect step, and times out waiting for the response.
#[test]
fn a_held_connect_counts_for_an_episode_whose_deadline_passes_before_its_name() {
    use crate::analyze::journey::{JourneyConfig, StepConfig};
    use crate::event::EpisodeOutcome;
    let step = |name: &str| StepConfig { name: name.into(), ..Default::default() };
    let journey = JourneyConfig {
        steps: vec![
            StepConfig { dns: Some("portal.example".into()), ..step("lookup") },
            StepConfig { port: Some(80), ..step("connect") },
            StepConfig { http_host: Some("www.example".into()), ..step("request") },
        ],
        timeout_secs: 0.055,
        ..portal_journey()
    };
    let mut p = Probe::new(CoreConfig { journeys: vec![journey], ..CoreConfig::default() });
    let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
    let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
    p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
    let answer = dns_answer(0, Some(web));
    p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &answer), 0);
    p.handle_frame(t(30), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x02, (100, 0), &[]), 0);
    p.handle_frame(t(50), LinkType::Ethernet, &tcp_frame((web, 80), (me, 50000), 0x12, (500, 101), &[]), 0);
    p.handle_frame(t(51), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x10, (101, 501), &[]), 0);
    // The deadline (55 ms) passes before the request that names the connection.
    let get = b"GET / HTTP/1.1\r\nHost: www.example\r\n\r\n";
    p.handle_frame(t(60), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x18, (101, 501), get), 0);
    p.finish(t(100));
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    let episode = events
        .iter()
        .find_map(|e| match &e.detail {
            Detail::Episode(ep) => Some(ep),
            _ => None,
        })
        .expect("an episode");
    assert_eq!((episode.outcome, episode.failed_step.as_deref()), (EpisodeOutcome::Timeout, Some("request")));
    let steps: Vec<(&str, u64)> = episode.steps.iter().map(|s| (s.name.as_str(), s.duration_us)).collect();
    assert_eq!(steps, vec![("lookup", 20_000), ("connect", 21_000)]);
    let connect = events.iter().find(|e| matches!(e.detail, Detail::TcpConnect(_))).unwrap();
    assert_eq!(connect.service.as_deref(), Some("portal.example"), "told before its name, under the lookup's");
}

#[test]
fn dhcp_ack_with_option_82_names_the_line() {
    let subscribers = crate::subscriber::SubscriberConfig { mode: Mode::Edge, learn_dhcp: true, ..Default::default() };
    let mut p = Probe::new(CoreConfig { subscribers, ..CoreConfig::default() });
    let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
    let ack = crate::dissect::dhcp::tests::ack();
    p.handle_frame(t(0), LinkType::Ethernet, &udp_frame([192, 0, 2, 1], 67, [255; 4], 68, &ack), 0);
    let query = udp_frame([192, 0, 2, 55], 40000, [198, 51, 100, 53], 53, &dns(false));
    let answer = udp_frame([198, 51, 100, 53], 53, [192, 0, 2, 55], 40000, &dns(true));
    p.handle_frame(t(10), LinkType::Ethernet, &query, 0);
    p.handle_frame(t(25), LinkType::Ethernet, &answer, 0);
    let event = std::iter::from_fn(|| p.poll_event()).find(|e| matches!(e.detail, Detail::Dns(_))).unwrap();
    assert_eq!(event.subscriber, "line-000123");
    assert_eq!(event.service.as_deref(), Some("portal.example"));
}

#[test]
fn a_wall_clock_step_relabels_windows_and_keeps_the_query_latency() {
    let mut p = Probe::new(CoreConfig { report_interval_secs: 60, ..CoreConfig::default() });
    // Packet time: a gateway that booted at the epoch. Its clock is then found to be
    // 1,700,000,000 s behind, while a query is in flight.
    let t = |ms: u64| Timestamp(3_000_000_000_000 + ms * 1_000_000);
    let query = udp_frame([192, 0, 2, 55], 40000, [198, 51, 100, 53], 53, &dns(false));
    let answer = udp_frame([198, 51, 100, 53], 53, [192, 0, 2, 55], 40000, &dns(true));
    p.handle_frame(t(10), LinkType::Ethernet, &query, 0);
    let offset = 1_700_000_000_000_000_000i64;
    p.clock_stepped(t(12), offset);
    p.handle_frame(t(35), LinkType::Ethernet, &answer, 0);
    p.finish(t(100));
    let dns = std::iter::from_fn(|| p.poll_event()).find_map(|e| match e.detail {
        Detail::Dns(d) => Some(d),
        _ => None,
    });
    assert_eq!(dns.unwrap().latency_us, Some(25_000));
    let reports: Vec<_> = std::iter::from_fn(|| p.poll_report()).collect();
    assert_eq!(reports.len(), 2, "the step closes the open window");
    assert_eq!(reports[0].window_start, 3_000_000 / 60_000 * 60_000);
    let wall_ms = (3_000_000_000_000 + offset as u64) / 1_000_000;
    assert_eq!(reports[1].window_start, wall_ms / 60_000 * 60_000);
    assert_eq!(reports[1].subscribers[0].metrics.dns.as_ref().unwrap().count, 1);
}

/// The journey `line_with_change_midway` follows: a lookup, then a request.
fn portal_journey() -> crate::analyze::journey::JourneyConfig {
    use crate::analyze::journey::{JourneyConfig, StepConfig};
    let step = |dns: Option<&str>, http_host: Option<&str>| StepConfig {
        name: "s".into(),
        dns: dns.map(Into::into),
        http_host: http_host.map(Into::into),
        ..Default::default()
    };
    JourneyConfig {
        name: "portal".into(),
        phase: String::new(),
        channel: String::new(),
        steps: vec![step(Some("portal.example"), None), step(None, Some("www.example"))],
        complete_bytes: None,
        timeout_secs: 10.0,
        count_from_step: 1,
    }
}

/// A lookup that starts a journey episode, then a connection that is still open when the
/// line opts out, and then carries a request: the window's subscriber reports, and the
/// events after the opt-out.
fn line_with_opt_out_midway(secret: Option<&str>, opt_out: &[&str]) -> (Vec<SubscriberReport>, usize) {
    let opt_out: Vec<String> = opt_out.iter().map(|s| s.to_string()).collect();
    let (reports, events) = line_with_change_midway(secret, |p| p.set_opt_out(opt_out));
    (reports.into_iter().flat_map(|r| r.subscribers).collect(), events)
}

/// The same traffic with `change` made between the handshake and the request: the reports,
/// and the events after the change.
fn line_with_change_midway(secret: Option<&str>, change: impl FnOnce(&mut Probe)) -> (Vec<Report>, usize) {
    let subscribers =
        crate::subscriber::SubscriberConfig { pseudonymize_secret: secret.map(String::from), ..Default::default() };
    let journeys = vec![portal_journey()];
    let mut p = Probe::new(CoreConfig { subscribers, journeys, ..CoreConfig::default() });
    let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
    let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
    p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
    p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &dns(true)), 0);
    p.handle_frame(t(30), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x02, (100, 0), &[]), 0);
    p.handle_frame(t(50), LinkType::Ethernet, &tcp_frame((web, 80), (me, 50000), 0x12, (500, 101), &[]), 0);
    p.handle_frame(t(51), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x10, (101, 501), &[]), 0);
    while p.poll_event().is_some() {}
    change(&mut p);
    let get = b"GET / HTTP/1.1\r\nHost: www.example\r\n\r\n";
    p.handle_frame(t(60), LinkType::Ethernet, &tcp_frame((me, 50000), (web, 80), 0x18, (101, 501), get), 0);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    p.handle_frame(
        t(90),
        LinkType::Ethernet,
        &tcp_frame((web, 80), (me, 50000), 0x18, (501, 101 + get.len() as u32), ok),
        0,
    );
    p.finish(t(100));
    let events = std::iter::from_fn(|| p.poll_event()).count();
    (std::iter::from_fn(|| p.poll_report()).collect(), events)
}

#[test]
fn a_journey_swap_keeps_the_open_episodes_of_journeys_it_left_as_they_were() {
    let run = |journeys: Vec<crate::analyze::journey::JourneyConfig>| {
        let (reports, _) = line_with_change_midway(None, |p| p.set_journeys(journeys));
        let completed: Vec<String> = reports
            .iter()
            .flat_map(|r| &r.subscribers)
            .flat_map(|s| &s.journeys)
            .filter(|j| j.ok == 1)
            .map(|j| j.journey.clone())
            .collect();
        let evicted: u64 = reports.iter().map(|r| r.capture.evictions.episodes).sum();
        (completed, evicted)
    };
    let portal = || vec!["portal".to_string()];
    let mut added = crate::analyze::journey::JourneyConfig { name: "video".into(), ..portal_journey() };
    added.steps.truncate(1);
    // Another journey added in front: the portal episode goes on, under its new place.
    assert_eq!(run(vec![added.clone(), portal_journey()]), (portal(), 0));
    assert_eq!(run(vec![portal_journey()]), (portal(), 0), "the same definitions again");
    // The portal journey changed, or gone: its open episode ends unreported, evicted.
    let changed = crate::analyze::journey::JourneyConfig { timeout_secs: 20.0, ..portal_journey() };
    assert_eq!(run(vec![changed]), (vec![], 1));
    assert_eq!(run(vec![added]), (vec![], 1));
    assert_eq!(run(vec![]), (vec![], 1));
}

#[test]
fn an_opt_out_stops_open_flows_and_withholds_the_open_window() {
    let (measured, events) = line_with_opt_out_midway(None, &[]);
    assert_eq!(measured.len(), 1);
    assert!(events > 0, "the request and the flow's end");
    let line = &measured[0];
    assert_eq!(line.journeys.len(), 1, "the episode ended in the window");
    assert_eq!(line.subscriber, "192.0.2.55");
    assert_eq!(line.metrics.dns.as_ref().map(|h| h.count), Some(1));
    assert_eq!(line.metrics.http_ttfb.as_ref().map(|h| h.count), Some(1));
    assert!(line.counters.bytes_up > 0 && line.counters.bytes_down > 0);

    assert_eq!(line_with_opt_out_midway(None, &["192.0.2.55"]), (vec![], 0), "the line opted out");
    // Reported under a pseudonym, opted out by its own key.
    let (pseudonymous, _) = line_with_opt_out_midway(Some("k"), &[]);
    assert_eq!(pseudonymous[0].subscriber, crate::subscriber::pseudonym("k", "192.0.2.55"));
    assert_eq!(line_with_opt_out_midway(Some("k"), &["192.0.2.55"]), (vec![], 0));
    // Another line's opt-out changes nothing here.
    assert_eq!(line_with_opt_out_midway(None, &["192.0.2.56"]), (measured, events));
}

#[test]
fn a_connect_is_measured_under_the_name_its_first_payload_gives() {
    let mut p = Probe::new(CoreConfig { report_interval_secs: 60, ..CoreConfig::default() });
    // 40 s before a window boundary.
    let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
    let (me, dns_server, web) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80]);
    // The last lookup that named the shared address was the portal's.
    let answer = dns_answer(0, Some(web));
    p.handle_frame(t(0), LinkType::Ethernet, &udp_frame(me, 40000, dns_server, 53, &dns(false)), 0);
    p.handle_frame(t(20), LinkType::Ethernet, &udp_frame(dns_server, 53, me, 40000, &answer), 0);
    let hello = crate::dissect::tls::tests::client_hello();
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&((hello.len() + 4) as u16).to_be_bytes());
    record.extend_from_slice(&[1, 0]);
    record.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    record.extend_from_slice(&hello);
    let get = b"GET / HTTP/1.1\r\nHost: www.example:8080\r\n\r\n".to_vec();
    // The handshake's first packet (ms), the client and server ports, and what the client
    // sends first (at `then` ms), if anything.
    type Connection<'a> = (u64, u16, u16, Option<(u64, &'a [u8])>);
    let connections: [Connection; 4] = [
        (1_000, 50001, 443, Some((1_040, &record))),
        (2_000, 50002, 80, Some((2_040, &get))),
        (3_000, 50003, 443, None),                     // closed before a byte was sent
        (39_980, 50004, 443, Some((40_010, &record))), // named in the next window
    ];
    for &(at, port, server_port, first) in &connections {
        let (c, s) = ((me, port), (web, server_port));
        p.handle_frame(t(at), LinkType::Ethernet, &tcp_frame(c, s, 0x02, (100, 0), &[]), 0);
        p.handle_frame(t(at + 10), LinkType::Ethernet, &tcp_frame(s, c, 0x12, (500, 101), &[]), 0);
        p.handle_frame(t(at + 11), LinkType::Ethernet, &tcp_frame(c, s, 0x10, (101, 501), &[]), 0);
        match first {
            Some((then, payload)) => {
                p.handle_frame(t(then), LinkType::Ethernet, &tcp_frame(c, s, 0x18, (101, 501), payload), 0)
            }
            None => p.handle_frame(t(at + 12), LinkType::Ethernet, &tcp_frame(c, s, 0x11, (101, 501), &[]), 0),
        }
    }
    p.finish(t(41_000));
    let connects: Vec<(u16, Option<String>)> = std::iter::from_fn(|| p.poll_event())
        .filter(|e| matches!(e.detail, Detail::TcpConnect(_)))
        .map(|e| (e.client.port(), e.service))
        .collect();
    let named = |port: u16, name: &str| (port, Some(name.to_string()));
    assert_eq!(
        connects,
        [
            named(50001, "example.com"),
            named(50002, "www.example"),
            named(50003, "portal.example"),
            named(50004, "portal.example"),
        ]
    );
    let reports: Vec<Report> = std::iter::from_fn(|| p.poll_report()).collect();
    assert_eq!(reports.len(), 2);
    let connects_in = |r: &Report, service: &str| {
        let s = r.subscribers[0].services.iter().find(|s| s.service == service);
        s.and_then(|s| s.metrics.connect_network.as_ref()).map_or(0, |h| h.count)
    };
    assert_eq!(connects_in(&reports[0], "example.com"), 1);
    assert_eq!(connects_in(&reports[0], "www.example"), 1);
    assert_eq!(connects_in(&reports[0], "portal.example"), 2, "told by the lookup's name at the close");
    assert_eq!(reports[1].subscribers[0].counters.connects, 0);
    assert_eq!(connects_in(&reports[1], "example.com"), 0);
}

#[test]
fn tcp_connect_timeout_config_is_honoured() {
    let p = Probe::new(CoreConfig { tcp_connect_timeout_secs: 3.0, ..CoreConfig::default() });
    assert_eq!(p.timeouts.connect, 3_000_000_000);
}

/// A lookup, then a QUIC connection to the address it gave (on a port of its own: the Initial
/// opens, so it is QUIC), then one to another address: the journey's `sni` step takes the
/// first, whose handshake names the service, and completes on the data that comes down after.
#[test]
fn a_lookup_then_a_quic_handshake_is_one_episode() {
    use crate::analyze::journey::{JourneyConfig, StepConfig};
    use crate::dissect::quic::{Kind, VERSION_1};
    use crate::event::EpisodeOutcome;
    use crate::testing::quic::{DCID, client_initial, hello, server_long, short};
    let journey = JourneyConfig {
        name: "portal_h3".into(),
        steps: vec![
            StepConfig { name: "dns".into(), dns: Some("portal.example".into()), ..Default::default() },
            StepConfig { name: "h3".into(), sni: Some("example.com".into()), ..Default::default() },
        ],
        ..portal_journey()
    };
    let mut p = Probe::new(CoreConfig { journeys: vec![journey], ..CoreConfig::default() });
    let t = |ms: u64| Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000);
    let (me, resolver, portal, elsewhere) = ([192, 0, 2, 55], [198, 51, 100, 53], [203, 0, 113, 80], [203, 0, 113, 99]);
    let mut frame = |ms: u64, (src, sp): ([u8; 4], u16), (dst, dp): ([u8; 4], u16), payload: &[u8]| {
        p.handle_frame(t(ms), LinkType::Ethernet, &udp_frame(src, sp, dst, dp, payload), 0);
    };
    let n = hello().len();
    frame(0, (me, 40000), (resolver, 53), &dns(false));
    frame(20, (resolver, 53), (me, 40000), &dns_answer(0, Some(portal)));
    // Elsewhere first: not where the lookup led.
    frame(25, (me, 50001), (elsewhere, 4443), &client_initial(VERSION_1, DCID, 0, &[(0, n)]));
    frame(30, (me, 50000), (portal, 4443), &client_initial(VERSION_1, DCID, 0, &[(0, n)]));
    frame(70, (portal, 4443), (me, 50000), &server_long(VERSION_1, Kind::Initial));
    frame(75, (me, 50000), (portal, 4443), &short());
    frame(90, (portal, 4443), (me, 50000), &short());
    p.finish(t(100));
    let events: Vec<Event> = std::iter::from_fn(|| p.poll_event()).collect();
    let quic: Vec<&Event> = events.iter().filter(|e| matches!(e.detail, Detail::Quic(_))).collect();
    assert_eq!(quic.len(), 2, "both handshakes are told: {quic:?}");
    let ok = quic.iter().find(|e| e.server.port() == 4443 && e.server.ip() == std::net::IpAddr::from(portal)).unwrap();
    assert_eq!(ok.service.as_deref(), Some("example.com"), "the SNI names the service");
    let episodes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.detail {
            Detail::Episode(ep) => Some(ep),
            _ => None,
        })
        .collect();
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    let ep = episodes[0];
    assert_eq!((ep.outcome, ep.latency_us), (EpisodeOutcome::Ok, Some(90_000)));
    let steps: Vec<(&str, u64, u64)> = ep.steps.iter().map(|s| (s.name.as_str(), s.offset_us, s.duration_us)).collect();
    assert_eq!(steps, [("dns", 0, 20_000), ("h3", 30_000, 45_000)]);
}
