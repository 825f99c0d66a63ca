//! Attacks on the collector's HTTP side, each with its bound asserted as a number: a flood of
//! password guesses from 40 addresses (the loopback network has many), trickled headers and
//! idle sockets, framing and cross-origin requests. After each the collector must still
//! answer, and its open descriptors and memory must come back.
//!
//! The MQTT side's attacks (reports with impossible counts and windows) are in
//! `collector_ingest.rs`; the agent's config checks in its unit tests.

use edgeprobe_tests::collector::{Collector, CollectorToml, free_port};
use edgeprobe_tests::{have, prerequisite};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The tests here measure time and load: one at a time, so that none is the others' noise.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeprobe-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A collector on the embedded broker, with `http` settings added to `[http]`.
fn start(tag: &str, http: &str, auth: Option<String>) -> (PathBuf, Collector) {
    let dir = scratch(tag);
    let port = free_port();
    let config = CollectorToml::embedded(free_port(), dir.join("data").display(), port).http(http).to_string();
    let collector = Collector::start_with_auth(&dir, "collector", port, &config, auth);
    (dir, collector)
}

fn port_of(collector: &Collector) -> u16 {
    collector.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A connection from `from` (any 127.x.y.z address) to the collector.
fn connect(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)).into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// One request from `from`; the status and the response's head.
fn request(from: Ipv4Addr, port: u16, head: &str) -> (u16, String) {
    let Ok(mut s) = connect(from, port) else { return (0, String::new()) };
    if s.write_all(format!("{head}Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    (status, head)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A bcrypt hash from Apache's htpasswd, of the cost given.
fn bcrypt(password: &str, cost: u32) -> String {
    let out = std::process::Command::new("htpasswd")
        .args(["-nbB", "-C", &cost.to_string(), "x", password])
        .output()
        .expect("htpasswd");
    String::from_utf8(out.stdout).unwrap().trim().trim_start_matches("x:").to_string()
}

/// Puts the calling thread at the lowest CPU priority. The attackers share the machine's two
/// cores with the collector and with the measured client; this way they do not take the CPU
/// the measured login needs on this side, and what is measured is the collector's queueing.
fn lowest_priority() {
    let tid = std::fs::read_link("/proc/thread-self").unwrap();
    let tid = tid.file_name().unwrap().to_str().unwrap().to_string();
    let status = std::process::Command::new("renice").args(["-n", "19", "-p", &tid]).output().unwrap().status;
    assert!(status.success(), "renice");
}

fn open_descriptors(collector: &Collector) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", collector.pid().unwrap())).map_or(0, |d| d.count())
}

fn resident_kib(collector: &Collector) -> u64 {
    resident_kib_of(collector.pid().unwrap())
}

/// 40 addresses guess alice's password as fast as the collector lets them. Each is soon made
/// to wait, then locked out; the name is locked for every address but the one alice logged in
/// from before. A first login, which needs a bcrypt check (from an address never
/// seen), waits behind at most one check per guessing address, and no guess runs while its
/// address waits: without the throttle it queued behind all 40.
#[test]
fn guessing_passwords_is_throttled_and_a_real_login_stays_fast() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !prerequisite(have("htpasswd"), "htpasswd (apache2-utils)") {
        return;
    }
    // Cost 8 keeps the debug build's checks near a tenth of a second each.
    let mut auth = String::new();
    let firsts = ["carol", "dave", "erin"];
    let users = [("alice", "alice-secret-1"), ("bob", "bob-secret-22")];
    for (name, password) in users.into_iter().chain(firsts.map(|n| (n, "first-login-3"))) {
        let hash = bcrypt(password, 8);
        auth += &format!("[[http.auth.users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nrole = \"read\"\n");
    }
    let (dir, collector) =
        start("guess", &auth, Some(basic("alice", "alice-secret-1").trim_end().replace("Authorization: ", "")));
    let port = port_of(&collector);
    let alice_home = Ipv4Addr::new(127, 0, 0, 200);
    let health = "GET /api/v1/health HTTP/1.1\r\n";
    assert_eq!(request(alice_home, port, &format!("{health}{}", basic("alice", "alice-secret-1"))).0, 200);
    // One uncontended check, for scale.
    let t = Instant::now();
    assert_eq!(
        request(Ipv4Addr::new(127, 0, 0, 210), port, &format!("{health}{}", basic("bob", "bob-secret-22"))).0,
        200
    );
    let alone = t.elapsed();

    let on = Arc::new(AtomicBool::new(true));
    let (tries, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let guessers: Vec<_> = (0..40u8)
        .map(|i| {
            let (on, tries, refused) = (on.clone(), tries.clone(), refused.clone());
            std::thread::spawn(move || {
                lowest_priority();
                let from = Ipv4Addr::new(127, 0, 1, 10 + i);
                let mut n = 0u64;
                while on.load(Ordering::Relaxed) {
                    n += 1;
                    let (status, _) =
                        request(from, port, &format!("{health}{}", basic("alice", &format!("guess-{n}"))));
                    tries.fetch_add(1, Ordering::Relaxed);
                    if status == 429 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    // Three first logins, each from an address of its own; their median is what is judged.
    let mut firsts: Vec<(Duration, (u16, String))> = firsts
        .iter()
        .zip(211u8..)
        .map(|(name, host)| {
            let t = Instant::now();
            let answer =
                request(Ipv4Addr::new(127, 0, 0, host), port, &format!("{health}{}", basic(name, "first-login-3")));
            (t.elapsed(), answer)
        })
        .collect();
    firsts.sort_by_key(|(took, _)| *took);
    let median = firsts[1].0;
    let alice = request(alice_home, port, &format!("{health}{}", basic("alice", "alice-secret-1")));
    let stranger =
        request(Ipv4Addr::new(127, 0, 0, 212), port, &format!("{health}{}", basic("alice", "alice-secret-1")));
    on.store(false, Ordering::Relaxed);
    guessers.into_iter().for_each(|g| g.join().unwrap());
    let (tries, refused) = (tries.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    eprintln!(
        "guessing: {tries} guesses, {refused} refused with 429; first logins took {:?} under the flood, \
         {alone:?} alone",
        firsts.iter().map(|(t, _)| *t).collect::<Vec<_>>()
    );
    assert!(firsts.iter().all(|(_, (status, _))| *status == 200), "{firsts:?}");
    assert!(
        median < alone * 4 + Duration::from_millis(500),
        "first logins waited {median:?} (median; {alone:?} alone)"
    );
    assert_eq!(alice.0, 200, "alice, from where she logged in before: {}", alice.1);
    assert_eq!(stranger.0, 429, "alice's name from a new address while it is locked: {}", stranger.1);
    assert!(stranger.1.to_ascii_lowercase().contains("retry-after:"), "{}", stranger.1);
    // Each address gets its free tries and a few backed-off ones, then only refusals.
    assert!(refused * 10 >= tries * 9, "{refused} of {tries} refused");
    assert!(collector.metric("edgeprobe_collector_http_logins_throttled_total") >= refused as f64);
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sockets that trickle their headers, or say nothing, are closed at the header-read timeout.
/// One address may hold `max_connections_per_address`; more are closed at once, so four
/// hosts opening 50 sockets each leave room for everyone else. Then 100 silent sockets from
/// 100 addresses: no more than `max_connections` are served at once, the rest wait to be
/// accepted. Either way the collector's descriptors and memory stay bounded, and come back.
#[test]
fn trickled_headers_and_idle_sockets_are_closed_and_capped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let limits = "max_connections = 48\nmax_connections_per_address = 8\nheader_read_timeout_secs = 2\n";
    let (dir, collector) = start("slow", limits, None);
    let port = port_of(&collector);
    let idle_fds = open_descriptors(&collector);
    let idle_rss = resident_kib(&collector);
    let flood = |clients: u16, addresses: u16, hold: Duration| {
        let on = Arc::new(AtomicBool::new(true));
        let lifetimes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let (on, lifetimes) = (on.clone(), lifetimes.clone());
                std::thread::spawn(move || {
                    let from = Ipv4Addr::new(127, 0, 2, (i % addresses) as u8 + 1);
                    while on.load(Ordering::Relaxed) {
                        let Ok(mut s) = connect(from, port) else { continue };
                        let opened = Instant::now();
                        // Half trickle a header line every 300 ms, half say nothing at all.
                        let trickle = i % 2 == 0;
                        if trickle {
                            let _ = s.write_all(b"GET /api/v1/health HTTP/1.1\r\n");
                        }
                        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                        let mut buf = [0u8; 512];
                        let closed = loop {
                            match s.read(&mut buf) {
                                Ok(0) => break true,
                                Ok(_) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                                Err(_) if opened.elapsed() > hold => break false,
                                Err(_) => {}
                            }
                            if trickle && s.write_all(b"X-Slow: 1\r\n").is_err() {
                                break true;
                            }
                        };
                        if closed {
                            lifetimes.lock().unwrap().push(opened.elapsed());
                        }
                        // Back at it soon, as a client that wants in would be, without spinning
                        // the machine's two cores on reconnects.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        (on, lifetimes, threads)
    };
    let peak = |collector: &Collector| {
        let mut peak = 0;
        for _ in 0..20 {
            peak = peak.max(open_descriptors(collector));
            std::thread::sleep(Duration::from_millis(200));
        }
        peak
    };

    // Four hosts, 50 sockets each.
    let (on, lifetimes, threads) = flood(200, 4, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let (status, _) = request(Ipv4Addr::new(127, 0, 3, 1), port, "GET /api/v1/health HTTP/1.1\r\n");
    let served_in = t.elapsed();
    let peak_fds = peak(&collector);
    let peak_rss = resident_kib(&collector);
    on.store(false, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let lifetimes = lifetimes.lock().unwrap().clone();
    let longest = lifetimes.iter().max().copied().unwrap_or_default();
    let refused = collector.metric("edgeprobe_collector_http_connections_refused_total");
    eprintln!(
        "four hosts: {} connections closed ({refused} at once), the longest after {longest:?}; descriptors \
         {idle_fds} idle, {peak_fds} at peak; a real request waited {served_in:?}; resident {idle_rss} KiB idle, \
         {peak_rss} KiB at peak",
        lifetimes.len()
    );
    assert_eq!(status, 200, "a real request under the flood");
    assert!(served_in < Duration::from_secs(1), "a real request waited {served_in:?}");
    assert!(lifetimes.len() >= 200 && refused >= 100.0, "{} closed, {refused} at once", lifetimes.len());
    assert!(longest < Duration::from_secs(4), "a slow client was held {longest:?}");
    assert!(peak_fds <= idle_fds + 4 * 8 + 4, "{peak_fds} descriptors open ({idle_fds} idle, 4 x 8 allowed)");
    assert!(peak_rss < idle_rss + 32 * 1024, "resident {peak_rss} KiB, {idle_rss} KiB idle");

    // 100 silent sockets from 100 hosts, held up to 10 s: 48 are served at a time.
    let (on, lifetimes, threads) = flood(100, 100, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let peak_fds = peak(&collector);
    on.store(false, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    std::thread::sleep(Duration::from_secs(3));
    let after_fds = open_descriptors(&collector);
    let after_rss = resident_kib(&collector);
    eprintln!(
        "a hundred hosts: {} connections closed; descriptors {peak_fds} at peak, {after_fds} after; resident \
         {after_rss} KiB after",
        lifetimes.lock().unwrap().len()
    );
    assert!(peak_fds <= idle_fds + 48 + 4, "{peak_fds} descriptors open ({idle_fds} idle, 48 connections allowed)");
    assert!(after_fds <= idle_fds + 2, "{after_fds} descriptors open after ({idle_fds} idle)");
    assert_eq!(collector.get("/api/v1/health")["status"], "ok");
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every answer forbids framing, sniffing and foreign scripts; a state-changing request that
/// names another origin is refused before it is authenticated, one that names this origin (or
/// none, as an operator's script) is not, nor is one with a bearer token (an operator's
/// system, which a browser cannot impersonate), whatever origin it names.
#[test]
fn answers_refuse_framing_and_other_origins() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let auth = "[[http.auth.users]]\nname = \"op\"\npassword = \"op-password-1\"\nrole = \"operator\"\n\
                [[http.auth.tokens]]\nname = \"crm\"\ntoken = \"crm-token-0123456789\"\nrole = \"operator\"\n";
    let (dir, collector) =
        start("origin", auth, Some(basic("op", "op-password-1").trim_end().replace("Authorization: ", "")));
    let port = port_of(&collector);
    let me = Ipv4Addr::LOCALHOST;
    let login = basic("op", "op-password-1");
    for (what, head) in [
        ("the console", format!("GET / HTTP/1.1\r\n{login}")),
        ("the API", format!("GET /api/v1/health HTTP/1.1\r\n{login}")),
        ("a refusal", "GET /api/v1/health HTTP/1.1\r\n".to_string()),
    ] {
        let (status, head) = request(me, port, &head);
        let head = head.to_ascii_lowercase();
        for header in [
            "content-security-policy: default-src 'self'",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(header), "{what} ({status}) lacks {header}:\n{head}");
        }
    }
    let ack = "POST /api/v1/incidents/999/ack HTTP/1.1\r\nContent-Length: 0\r\n";
    let cases = [
        ("Origin: http://evil.example\r\n".to_string(), 403),
        ("Referer: http://evil.example/page\r\n".to_string(), 403),
        (format!("Origin: http://127.0.0.1:{}\r\n", port + 1), 403),
        (format!("Origin: http://127.0.0.1:{port}\r\n"), 404),
        // Behind a proxy that ends TLS: the same host and port, another scheme.
        (format!("Origin: https://127.0.0.1:{port}\r\n"), 404),
        ("Origin: null\r\n".to_string(), 403),
        (format!("Referer: http://127.0.0.1:{port}/incidents/999\r\n"), 404),
        (String::new(), 404),
    ];
    for (extra, expected) in cases {
        let (status, head) = request(me, port, &format!("{ack}{login}{extra}"));
        assert_eq!(status, expected, "{extra:?}:\n{head}");
    }
    // Refused before authentication: a foreign page learns nothing about the login.
    assert_eq!(request(me, port, &format!("{ack}Origin: http://evil.example\r\n")).0, 403);
    // A system's token passes the origin check, and is then checked like any login.
    let token = "Authorization: Bearer crm-token-0123456789\r\n";
    assert_eq!(request(me, port, &format!("{ack}{token}Origin: http://crm.example\r\n")).0, 404);
    let wrong = "Authorization: Bearer crm-token-wrong-0000\r\n";
    assert_eq!(request(me, port, &format!("{ack}{wrong}Origin: http://crm.example\r\n")).0, 401);
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A collector on its embedded broker at `mqtt`, with `broker` settings added to `[broker]`.
fn start_embedded(tag: &str, mqtt: u16, broker: &str) -> (PathBuf, Collector) {
    let dir = scratch(tag);
    let port = free_port();
    let config = CollectorToml::embedded(mqtt, dir.join("data").display(), port).broker(broker).to_string();
    let collector = Collector::start(&dir, "collector", port, &config);
    collector.wait_metric("edgeprobe_collector_mqtt_connected", 1.0, Duration::from_secs(20));
    (dir, collector)
}

/// An MQTT 3.1.1 CONNECT with a clean session, `id`, and a login if given.
fn connect_packet(id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let string = |s: &str| [&(s.len() as u16).to_be_bytes()[..], s.as_bytes()].concat();
    let flags = 0x02 | login.map_or(0, |_| 0xc0);
    let mut body = [&string("MQTT")[..], &[4, flags, 0, 60]].concat();
    body.extend(string(id));
    if let Some((user, password)) = login {
        body.extend(string(user));
        body.extend(string(password));
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// The CONNACK return code for a CONNECT, or None when the broker closed without one.
fn connack(port: u16, id: &str, login: Option<(&str, &str)>) -> Option<u8> {
    let mut s = connect(Ipv4Addr::LOCALHOST, port).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(&connect_packet(id, login)).ok()?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).ok()?;
    (ack[0] == 0x20).then_some(ack[3])
}

/// The embedded broker's process: the collector's child.
fn broker_pid(collector: &Collector) -> Option<u32> {
    child_of(collector.pid()?)
}

/// A child process of `parent`, from /proc.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
}

fn resident_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A real report, moved to the present, published once the collector is subscribed; true
/// once the collector has stored it. A broker restarted just before may have taken a first
/// try while the collector was not yet subscribed again (nobody to deliver it to), so there
/// are three tries.
fn a_report_gets_through(collector: &Collector, mqtt: u16, login: Option<(&str, &str)>, seq: u64) -> bool {
    let mut report = edgeprobe_tests::current_report("lab_http.pcap");
    report.agent_id = login.map_or("gw-1", |(user, _)| user).to_string();
    let topic = format!("edgeprobe/v1/agents/{}/report", report.agent_id);
    for attempt in 0..3 {
        collector.wait_metric("edgeprobe_collector_mqtt_connected", 1.0, Duration::from_secs(30));
        report.seq = seq * 10 + attempt;
        let before = collector.metric("edgeprobe_collector_reports_stored_total");
        let mut options = rumqttc::MqttOptions::new(report.agent_id.clone(), "127.0.0.1", mqtt);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        let payload = edgeprobe_wire::encode(&report, edgeprobe_wire::Encoding::Cbor);
        client.publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        for event in connection.iter() {
            if matches!(event, Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) || Instant::now() > deadline {
                break;
            }
            if event.is_err() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if collector.metric("edgeprobe_collector_reports_stored_total") > before {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("try {}: the report was not stored", attempt + 1);
    }
    false
}

/// A CONNECT whose socket is reset before the CONNACK, then the same id again, panicked
/// rumqttd; so did ids with wildcards (now refused by the gate before rumqttd sees them).
/// The broker is the collector's child, restarted when it exits: whatever happens to it,
/// the collector stays up, and reports get through again.
#[test]
fn broker_crashes_cost_a_reconnect_not_the_collector() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mqtt = free_port();
    let (dir, collector) = start_embedded("broker-crash", mqtt, "");
    let pid = collector.pid().unwrap();
    let first_broker = broker_pid(&collector).expect("the broker runs as the collector's child");
    for round in 0..10 {
        for id in ["dup", "gw-#", "a+b"] {
            if let Ok(mut s) = connect(Ipv4Addr::LOCALHOST, mqtt) {
                let _ = s.write_all(&connect_packet(id, None));
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            let _ = connack(mqtt, id, None);
        }
        std::thread::sleep(Duration::from_millis(50 * round));
    }
    std::thread::sleep(Duration::from_secs(1));
    let restarts = collector.metric("edgeprobe_collector_embedded_broker_restarts_total");
    eprintln!("broker crashes: the broker restarted {restarts} times");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the collector is gone: {}", collector.log());
    assert_eq!(collector.get("/api/v1/health")["status"], "ok");
    assert!(a_report_gets_through(&collector, mqtt, None, 1), "no report stored after the attack: {}", collector.log());
    if restarts > 0.0 {
        assert_ne!(broker_pid(&collector), Some(first_broker), "a new broker process");
    }
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 300 publishes of 3 MiB, to as many topics and to one retained state topic, once took the
/// collector from 0.55 GB to 1.9 GB for good. Now each topic keeps two 256 KiB segments (and
/// the message past them), and the broker process is restarted past `embedded_max_memory_mb`:
/// the collector's own memory hardly moves and comes back, the broker's stays within its bound.
#[test]
fn floods_of_large_messages_stay_within_the_brokers_bound() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mqtt = free_port();
    let (dir, collector) = start_embedded("broker-flood", mqtt, "embedded_max_memory_mb = 128");
    let idle = resident_kib(&collector);
    let broker_idle = broker_pid(&collector).map_or(0, resident_kib_of);
    let peak = Arc::new(AtomicU64::new(0));
    let on = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, on, pid) = (peak.clone(), on.clone(), collector.pid().unwrap());
        std::thread::spawn(move || {
            let mut broker_peak = 0;
            while on.load(Ordering::Relaxed) {
                peak.fetch_max(resident_kib_of(pid), Ordering::Relaxed);
                broker_peak = child_of(pid).map_or(broker_peak, |c| broker_peak.max(resident_kib_of(c)));
                std::thread::sleep(Duration::from_millis(50));
            }
            broker_peak
        })
    };
    let payload = vec![0x5a; 3 << 20];
    let mut options = rumqttc::MqttOptions::new("flood", "127.0.0.1", mqtt);
    options.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut connection) = rumqttc::Client::new(options, 10);
    let sender = std::thread::spawn(move || {
        for i in 0..300 {
            let topic = if i % 2 == 0 { format!("junk/{i}") } else { "edgeprobe/v1/agents/gw-x/state".to_string() };
            if client.publish(topic, rumqttc::QoS::AtMostOnce, i % 2 == 1, payload.clone()).is_err() {
                break;
            }
        }
        let _ = client.disconnect();
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    for event in connection.iter() {
        if Instant::now() > deadline {
            break;
        }
        match event {
            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
            _ => {}
        }
    }
    sender.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    on.store(false, Ordering::Relaxed);
    let broker_peak = sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let after = resident_kib(&collector);
    let broker_after = broker_pid(&collector).map_or(0, resident_kib_of);
    let restarts = collector.metric("edgeprobe_collector_embedded_broker_restarts_total");
    eprintln!(
        "flood: collector {idle} KiB idle, {peak} KiB at peak, {after} KiB after; broker {broker_idle} KiB idle, \
         {broker_peak} KiB at peak, {broker_after} KiB after, restarted {restarts} times"
    );
    assert!(peak < idle + 32 * 1024, "the collector grew from {idle} to {peak} KiB");
    // Sampled every 50 ms and watched every 100 ms: a bound, plus what a few messages add.
    assert!(broker_peak < (128 + 64) * 1024, "the broker reached {broker_peak} KiB (bound 128 MiB)");
    // rumqttd keeps each topic's last messages: what the flood left stays, within the bound.
    assert!(broker_after < (128 + 16) * 1024, "the broker holds {broker_after} KiB after the flood");
    assert!(a_report_gets_through(&collector, mqtt, None, 2), "no report stored after the flood: {}", collector.log());
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With logins, the embedded broker takes only the listed ones, and no id that is not one
/// topic level; the collector logs in to it with one of its own.
#[test]
fn the_embedded_broker_takes_only_its_logins() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mqtt = free_port();
    let users = "[broker.embedded_users]\n\"gw-1\" = \"gw-1-password\"\n";
    let (dir, collector) = start_embedded("broker-login", mqtt, users);
    assert_eq!(connack(mqtt, "gw-1", Some(("gw-1", "gw-1-password"))), Some(0));
    for (id, login) in [
        ("gw-1", None),
        ("gw-1", Some(("gw-1", "wrong-password"))),
        ("gw-1", Some(("nobody", "gw-1-password"))),
        ("gw-#", Some(("gw-1", "gw-1-password"))),
    ] {
        let answer = connack(mqtt, id, login);
        assert!(answer.is_none_or(|code| code != 0), "{id} {login:?} was let in");
    }
    assert!(a_report_gets_through(&collector, mqtt, Some(("gw-1", "gw-1-password")), 1), "{}", collector.log());
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A logged-in client with a raw socket, for packets a well-behaved client would not send.
fn logged_in(mqtt: u16, user: &str, password: &str) -> TcpStream {
    let mut s = connect(Ipv4Addr::LOCALHOST, mqtt).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&connect_packet(user, Some((user, password)))).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "{user} was not let in");
    s
}

/// The first packet type the broker answers `packet` with, or None when it closes instead.
fn answer_to(s: &mut TcpStream, packet: rumqttc::mqttbytes::v4::Packet) -> Option<u8> {
    let mut out = bytes::BytesMut::new();
    packet.write(&mut out, 1 << 20).unwrap();
    s.write_all(&out).ok()?;
    let mut first = [0u8; 1];
    match s.read(&mut first) {
        Ok(1) => Some(first[0] >> 4),
        _ => None,
    }
}

/// The listening TCP ports of a process, from /proc: its sockets' inodes matched against the
/// kernel's table of listeners.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    std::fs::read_link(e.path())
                        .ok()?
                        .to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listening = f.get(3) == Some(&"0A") && inodes.iter().any(|i| Some(&i.as_str()) == f.get(9));
            listening.then(|| u16::from_str_radix(f[1].rsplit_once(':')?.1, 16).ok()).flatten()
        })
        .collect()
}

/// With logins, each agent may publish only its own report and state and read only its own
/// config, as `config/mosquitto.acl.example` allows; anything else costs it the connection,
/// counted by reason. rumqttd itself, behind the gate, takes no agent's password.
#[test]
fn agents_publish_and_subscribe_only_where_the_acl_allows() {
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{Packet, Publish, Subscribe};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mqtt = free_port();
    let users = "[broker.embedded_users]\n\"gw-1\" = \"gw-1-password\"\n\"gw-2\" = \"gw-2-password\"\n";
    let (dir, collector) = start_embedded("broker-acl", mqtt, users);
    let denied = |reason: &str| {
        collector.metric(&format!("edgeprobe_collector_embedded_broker_denied_total{{reason=\"{reason}\"}}"))
    };
    let stored = collector.metric("edgeprobe_collector_reports_stored_total");

    // Another agent's report: a real one, under gw-2's name, sent by gw-1.
    let mut forged = edgeprobe_tests::current_report("lab_http.pcap");
    forged.agent_id = "gw-2".into();
    let payload = edgeprobe_wire::encode(&forged, edgeprobe_wire::Encoding::Cbor);
    let mut s = logged_in(mqtt, "gw-1", "gw-1-password");
    let mut publish = Publish::new("edgeprobe/v1/agents/gw-2/report", QoS::AtLeastOnce, payload);
    publish.pkid = 1;
    assert_eq!(answer_to(&mut s, Packet::Publish(publish)), None, "gw-1 published as gw-2");
    // Its own config is readable; everything, or another agent's config, is not.
    let mut s = logged_in(mqtt, "gw-1", "gw-1-password");
    let own = Subscribe::new("edgeprobe/v1/agents/gw-1/config", QoS::AtLeastOnce);
    assert_eq!(answer_to(&mut s, Packet::Subscribe(own)), Some(9), "SUBACK for its own config");
    for filter in ["#", "edgeprobe/v1/agents/+/report", "edgeprobe/v1/agents/gw-2/config"] {
        let mut s = logged_in(mqtt, "gw-1", "gw-1-password");
        assert_eq!(answer_to(&mut s, Packet::Subscribe(Subscribe::new(filter, QoS::AtMostOnce))), None, "{filter}");
    }
    assert_eq!(connack(mqtt, "gw-1", Some(("gw-1", "gw-2-password"))), Some(5));
    edgeprobe_tests::wait_for("the refusals counted", Duration::from_secs(5), || {
        denied("publish") >= 1.0 && denied("subscribe") >= 3.0 && denied("login") >= 1.0
    });
    assert_eq!(collector.metric("edgeprobe_collector_reports_stored_total"), stored, "the forged report was stored");

    // The broker's own port, behind the gate, refuses an agent's real login.
    let broker = broker_pid(&collector).expect("the broker child");
    let inner: Vec<u16> = listening_ports(broker).into_iter().filter(|&p| p != mqtt).collect();
    assert!(!inner.is_empty(), "rumqttd's own port");
    for port in &inner {
        assert_ne!(connack(*port, "gw-1", Some(("gw-1", "gw-1-password"))), Some(0), "port {port} took gw-1");
    }

    // And what is allowed still works, for both agents.
    assert!(a_report_gets_through(&collector, mqtt, Some(("gw-1", "gw-1-password")), 1), "{}", collector.log());
    assert!(a_report_gets_through(&collector, mqtt, Some(("gw-2", "gw-2-password")), 1), "{}", collector.log());
    eprintln!(
        "acl: refused {} logins, {} publishes, {} subscriptions; rumqttd's own port(s) {inner:?} refused gw-1",
        denied("login"),
        denied("publish"),
        denied("subscribe")
    );
    drop(collector);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Over HTTPS, sockets that never send a ClientHello hold a handshake slot each until its
/// deadline; no more than `max_connections` are taken at once, so the descriptors stay bounded.
#[test]
fn stalled_tls_handshakes_are_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !prerequisite(have("openssl"), "openssl") {
        return;
    }
    let dir = scratch("tls-stall");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=edgeprobe-test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success());
    let port = free_port();
    let tls =
        format!("tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nmax_connections = 16", cert.display(), key.display());
    let config = CollectorToml::external("mqtt://127.0.0.1:1", dir.join("data").display(), port).http(&tls).to_string();
    std::fs::write(dir.join("collector.toml"), &config).unwrap();
    let mut child = std::process::Command::new(edgeprobe_tests::collector_bin())
        .arg("--config")
        .arg(dir.join("collector.toml"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    edgeprobe_tests::wait_for("the collector's port", Duration::from_secs(30), || {
        connect(Ipv4Addr::LOCALHOST, port).is_ok()
    });
    std::thread::sleep(Duration::from_millis(500));
    let idle = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let silent: Vec<TcpStream> =
        (0..100u8).filter_map(|i| connect(Ipv4Addr::new(127, 0, 4, i + 1), port).ok()).collect();
    std::thread::sleep(Duration::from_secs(2));
    let held = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    drop(silent);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("stalled handshakes: 100 silent sockets, descriptors {idle} idle, {held} while they wait");
    assert!(held <= idle + 16 + 4, "{held} descriptors ({idle} idle, 16 handshakes allowed)");
    let _ = std::fs::remove_dir_all(&dir);
}
