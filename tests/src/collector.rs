//! Running the real collector in a test: its own config, data directory (or PostgreSQL
//! database) and HTTP port, plus agents that replay fixture captures into a broker.

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A collector's configuration file, built up from where its broker is, its store and its HTTP
/// listener; then more settings for the broker or HTTP, and more sections.
#[derive(Clone, Debug)]
pub struct CollectorToml {
    broker: Vec<String>,
    storage: String,
    http: Vec<String>,
    sections: Vec<String>,
}

impl CollectorToml {
    /// On the broker at `url` (`mqtt://host:port`), storing at `storage`, answering on `http`.
    pub fn external(url: &str, storage: impl std::fmt::Display, http: u16) -> CollectorToml {
        CollectorToml::new(vec!["embedded = false".into(), format!("url = \"{url}\"")], storage, http)
    }

    /// On its embedded broker, listening on port `mqtt`.
    pub fn embedded(mqtt: u16, storage: impl std::fmt::Display, http: u16) -> CollectorToml {
        CollectorToml::new(vec![format!("embedded_listen = \"127.0.0.1:{mqtt}\"")], storage, http)
    }

    fn new(broker: Vec<String>, storage: impl std::fmt::Display, http: u16) -> CollectorToml {
        let http = vec![format!("listen = \"127.0.0.1:{http}\"")];
        CollectorToml { broker, storage: storage.to_string(), http, sections: Vec::new() }
    }

    /// More `[broker]` settings.
    pub fn broker(mut self, toml: &str) -> CollectorToml {
        self.broker.push(toml.trim().into());
        self
    }

    /// More `[http]` settings.
    pub fn http(mut self, toml: &str) -> CollectorToml {
        self.http.push(toml.trim().into());
        self
    }

    /// Whole sections (`[correlation]`, `[http.auth]`, ...) after the rest.
    pub fn section(mut self, toml: &str) -> CollectorToml {
        self.sections.push(toml.trim().into());
        self
    }
}

impl std::fmt::Display for CollectorToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "[broker]\n{}", self.broker.join("\n"))?;
        writeln!(f, "[storage]\nurl = \"{}\"", self.storage)?;
        writeln!(f, "[http]\n{}", self.http.join("\n"))?;
        for s in &self.sections {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Collector {
    child: Option<Child>,
    pub base: String,
    pub config: PathBuf,
    log: PathBuf,
    /// The Authorization header sent with every request, for a collector with a login.
    pub auth: Option<String>,
}

impl Collector {
    /// Writes `config` (which must set `[http] listen` to `port`) to `dir` and starts the
    /// collector; returns once its API answers.
    pub fn start(dir: &Path, name: &str, port: u16, config: &str) -> Collector {
        Collector::start_with_auth(dir, name, port, config, None)
    }

    /// `start` for a collector whose config sets a login; `auth` is the Authorization header.
    pub fn start_with_auth(dir: &Path, name: &str, port: u16, config: &str, auth: Option<String>) -> Collector {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut c = Collector { child: None, base: format!("http://127.0.0.1:{port}"), config: path, log, auth };
        c.restart();
        c
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = ureq::request(method, &format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    /// Starts the process (again) with the same config.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(crate::collector_bin())
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start edgeprobe-collector");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.request("GET", "/api/v1/health").timeout(Duration::from_secs(2)).call().is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("collector exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("collector API did not come up: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Value {
        match self.request("GET", path).call() {
            Ok(r) => r.into_json().expect("JSON body"),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// A page's text (the console's HTML).
    pub fn get_text(&self, path: &str) -> String {
        match self.request("GET", path).call() {
            Ok(r) => r.into_string().expect("a text body"),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// The JSON body, or None on an error status (a store reconnecting answers 503 once).
    pub fn try_get(&self, path: &str) -> Option<Value> {
        self.request("GET", path).call().ok().and_then(|r| r.into_json().ok())
    }

    /// Status and JSON body of a POST.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        match self.request("POST", path).send_json(body) {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    /// Status and JSON body of a PUT.
    pub fn put(&self, path: &str, body: Value) -> (u16, Value) {
        match self.request("PUT", path).send_json(body) {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("PUT {path}: {e}"),
        }
    }

    /// One sample from `/metrics`, by its name and labels as written there.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.request("GET", "/metrics").call().unwrap().into_string().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in /metrics"))
    }

    /// Polls `/metrics` until `series` reaches `at_least`.
    /// The collector's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The CPU time the collector has used so far (user and system), from /proc.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // In USER_HZ, which Linux fixes at 100 for user space on every architecture.
        Some(Duration::from_millis(ticks * 10))
    }

    pub fn wait_metric(&self, series: &str, at_least: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(series);
            if v >= at_least {
                return;
            }
            assert!(Instant::now() < deadline, "{series} is {v}, expected {at_least} in time; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it as systemd would (SIGTERM), waits, and checks that it exited cleanly.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "collector exited with {status} on SIGTERM: {}", self.log());
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("collector did not stop on SIGTERM: {}", self.log());
        }
    }

    /// Kills it without warning.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn import_customers(&self, csv: &Path) -> std::process::Output {
        Command::new(crate::collector_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("import-customers")
            .arg(csv)
            .output()
            .expect("run import-customers")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The PostgreSQL server the tests may use: `EDGEPROBE_POSTGRES_URL`, or the local one.
pub fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("EDGEPROBE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    postgres::Client::connect(&url, postgres::NoTls).ok().map(|_| url)
}

/// The PostgreSQL server for a test, or None after `prerequisite` has said why it is skipped.
pub fn require_postgres() -> Option<String> {
    let url = postgres_admin_url();
    let what = "PostgreSQL at EDGEPROBE_POSTGRES_URL or postgres://postgres@127.0.0.1:5432/postgres";
    if crate::prerequisite(url.is_some(), what) { url } else { None }
}

/// Runs `scenario` with Mosquitto on a SQLite store of its own (a fresh directory, removed
/// afterwards); skips without Mosquitto.
pub fn on_sqlite(tag: &str, scenario: impl FnOnce(&str)) {
    if !crate::prerequisite(crate::broker::mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-{tag}-sqlite-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    scenario(dir.to_str().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `scenario` with Mosquitto on a PostgreSQL database of its own, dropped afterwards;
/// skips without either.
pub fn on_postgres(tag: &str, scenario: impl FnOnce(&str)) {
    if !crate::prerequisite(crate::broker::mosquitto().is_some(), "mosquitto (apt-get install mosquitto)") {
        return;
    }
    let Some(admin) = require_postgres() else { return };
    let db = TempDatabase::create(&admin, tag);
    scenario(&db.url);
}

/// A database of its own for one test, dropped afterwards.
pub struct TempDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl TempDatabase {
    pub fn create(admin: &str, tag: &str) -> TempDatabase {
        let name = format!("edgeprobe_{tag}_{}", std::process::id());
        let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        TempDatabase { admin: admin.to_string(), url: format!("{base}/{name}"), name }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// One agent replaying a capture into the broker as subscriber `subscriber`, its first packet
/// moved to `start_at` (Unix seconds). Returns the window reports it published.
pub fn replay_agent(
    dir: &Path,
    capture: &Path,
    agent_id: &str,
    subscriber: &str,
    broker: &str,
    start_at: u64,
    interval_secs: u64,
) -> Vec<Value> {
    replay_agent_with(dir, capture, agent_id, subscriber, broker, (start_at, interval_secs), "")
}

/// `replay_agent` with `extra` appended to the agent's config (journeys, say); `times` is the
/// start and the report interval.
pub fn replay_agent_with(
    dir: &Path,
    capture: &Path,
    agent_id: &str,
    subscriber: &str,
    broker: &str,
    times: (u64, u64),
    extra: &str,
) -> Vec<Value> {
    replay_agent_measuring(dir, capture, (agent_id, subscriber), broker, times, "", extra)
}

/// `replay_agent_with` with `measure` added to the agent's `[measure]` section.
pub fn replay_agent_measuring(
    dir: &Path,
    capture: &Path,
    (agent_id, subscriber): (&str, &str),
    broker: &str,
    (start_at, interval_secs): (u64, u64),
    measure: &str,
    extra: &str,
) -> Vec<Value> {
    let config = dir.join(format!("agent-{agent_id}.toml"));
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{agent_id}\"\n[measure]\nreport_interval_secs = {interval_secs}\n{measure}\n\
             [subscribers]\nmode = \"cpe\"\nsubscriber_id = \"{subscriber}\"\n[mqtt]\nurl = \"{broker}\"\n{extra}"
        ),
    )
    .unwrap();
    let out = Command::new(crate::edgeprobe_bin())
        .arg("replay")
        .arg(capture)
        .args(["--reports", "--publish", "--start-at", &start_at.to_string(), "--config"])
        .arg(&config)
        .output()
        .expect("run edgeprobe replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay {agent_id}: {stderr}");
    assert!(!stderr.contains("not acknowledged"), "replay {agent_id}: {stderr}");
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
