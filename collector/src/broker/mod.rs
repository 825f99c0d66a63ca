//! The embedded MQTT broker (rumqttd) for single-box use: agents and the collector connect to
//! it like to any broker, so moving to Mosquitto or a cluster later changes only a URL.
//!
//! It runs in a child process of the collector's own binary (`edgeprobe-collector
//! embedded-broker`), supervised. A client can make rumqttd panic (a CONNECT that races the
//! same id's reset connection; ids holding wildcards), and there a panic must cost the
//! agents a reconnect, not the collector its ingest, store and console. The supervisor
//! restarts the broker when it exits, and kills it first when its resident memory passes
//! `embedded_max_memory_mb`: rumqttd keeps every topic's recent messages, and the bound on
//! them is per topic. The child exits when its standard input closes, so it never outlives
//! the collector, even one killed with SIGKILL.
//!
//! Clients do not reach rumqttd directly: [`gate`] takes their connections, checks logins
//! and the agent ACL, and forwards them to rumqttd on a loopback port. Its refusals are
//! reported to the supervisor as lines on the child's standard output.

pub mod gate;

use crate::config::BrokerConfig;
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// What the child needs, sent on its standard input (so passwords stay out of `ps`).
#[derive(Serialize, Deserialize)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Username to password; empty lets anyone in.
    pub users: BTreeMap<String, String>,
    /// The collector's own user name, which may read every agent.
    pub collector: Option<String>,
}

impl Settings {
    pub fn new(config: &BrokerConfig) -> Settings {
        let mut users = config.embedded_users.clone();
        // The collector logs in to its own broker like any client.
        if let (false, Some(user)) = (users.is_empty(), &config.username) {
            users.insert(user.clone(), config.password.clone().unwrap_or_default());
        }
        let collector = config.username.clone().filter(|_| !users.is_empty());
        Settings { listen: config.embedded_listen, users, collector }
    }
}

/// `embedded-broker`: reads [`Settings`] from standard input, runs the broker, and exits when
/// standard input closes.
pub fn run_child() -> anyhow::Result<()> {
    // A panic in any of rumqttd's threads ends the process, whatever the build's panic
    // strategy: unwound, it would leave the broker holding poisoned locks, alive and deaf.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let settings: Settings = serde_json::from_str(&line)?;
    // rumqttd listens on a loopback port of its own, and takes only the gate's login.
    let inner = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let secret = random_hex()?;
    // Reports are at most 4 MiB (the wire limit). Each topic keeps at most two segments of
    // 256 KiB (plus one message past the limit): rumqttd's defaults here were ten of 100 MB.
    let text = format!(
        r#"
id = 0
[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 262144
max_segment_count = 2

[v4.1]
name = "v4-1"
listen = "{inner}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 10000
max_payload_size = {}
max_inflight_count = 200
dynamic_filters = true
"#,
        gate::MAX_PACKET_BYTES
    );
    let mut config: rumqttd::Config = toml::from_str(&text)?;
    for server in config.v4.iter_mut().flat_map(|servers| servers.values_mut()) {
        let secret = secret.clone();
        server.set_auth_handler(move |_client: String, _user: String, password: String| {
            let ok = crate::http::auth::same(&secret, &password);
            async move { ok }
        });
    }
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new().name("broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            eprintln!("edgeprobe-collector: embedded broker stopped: {e}");
            std::process::exit(1);
        }
    })?;
    let gate = Arc::new(gate::Gate { users: settings.users, collector: settings.collector, secret });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .thread_name("gate")
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(settings.listen))?;
    let (denied, mut refusals) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(gate::run(gate, listener, inner, denied));
    runtime.spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(why) = refusals.recv().await {
            let _ = out.write_all(format!("denied {}\n", why.as_str()).as_bytes()).await;
            let _ = out.flush().await;
        }
    });
    // Until the collector is gone.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

/// 128 random bits, as hex: a password nobody types.
pub fn random_hex() -> std::io::Result<String> {
    let mut secret = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
    Ok(secret.iter().map(|x| format!("{x:02x}")).collect())
}

/// Starts the broker child and keeps it running until `stop` is set. Fails at once if the
/// port is taken, rather than in a loop of restarts.
pub fn start(
    config: &BrokerConfig,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen = config.embedded_listen;
    std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("embedded broker on {listen}: {e}"))?;
    let settings = serde_json::to_string(&Settings::new(config))? + "\n";
    let max_rss_kib = config.embedded_max_memory_mb.saturating_mul(1024);
    let exe = std::env::current_exe()?;
    Ok(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let child = tokio::process::Command::new(&exe)
                .arg("embedded-broker")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match child {
                Ok(child) => child,
                Err(e) => {
                    eprintln!("edgeprobe-collector: cannot start the embedded broker: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            // Kept open while the child runs: its end of the pipe is how it knows we are alive.
            let mut stdin = child.stdin.take();
            if let Some(pipe) = stdin.as_mut() {
                let _ = pipe.write_all(settings.as_bytes()).await;
            }
            if let Some(out) = child.stdout.take() {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(out).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let why =
                            gate::Denied::ALL.iter().position(|d| line.strip_prefix("denied ") == Some(d.as_str()));
                        if let Some(i) = why {
                            metrics.broker_denied[i].fetch_add(1, Relaxed);
                        }
                    }
                });
            }
            let pid = child.id();
            let started = std::time::Instant::now();
            let mut watch = tokio::time::interval(Duration::from_millis(100));
            let why = loop {
                tokio::select! {
                    status = child.wait() => break format!("exited ({})", status.map_or_else(|e| e.to_string(), |s| s.to_string())),
                    _ = watch.tick() => {
                        if let Some(rss) = pid.and_then(resident_kib).filter(|&kib| kib > max_rss_kib) {
                            let _ = child.kill().await;
                            break format!("used {} MiB, over embedded_max_memory_mb", rss / 1024);
                        }
                    }
                    _ = stop.changed() => {
                        let _ = child.kill().await;
                        return;
                    }
                }
            };
            drop(stdin);
            metrics.broker_restarts.fetch_add(1, Relaxed);
            // A broker that ran a while restarts at once; one that keeps failing, slower.
            backoff = if started.elapsed() > Duration::from_secs(10) {
                Duration::from_millis(100)
            } else {
                (backoff * 2).min(Duration::from_secs(5))
            };
            eprintln!("edgeprobe-collector: the embedded broker {why}; restarting in {backoff:?}");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
    }))
}

/// A process's resident memory in KiB, from /proc.
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}
