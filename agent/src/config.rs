//! The agent's TOML configuration. Unknown keys are errors, and every error names the line and
//! column it was found at, so a field engineer can fix a file on a router without guessing.

use crate::capture::live::CaptureConfig;
use crate::publish::mqtt::MqttConfig;
use edgeprobe_core::CoreConfig;
use edgeprobe_core::subscriber::SubscriberConfig;
use serde::Deserialize;
use std::path::Path;

/// A line's share of a window's report, at least: the ingest benchmark's lines, with their
/// histograms and a few services, take about 330 bytes each.
const LINE_BYTES: usize = 330;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub agent: AgentSection,
    /// Capacities and timeouts of the measurement core.
    pub measure: CoreConfig,
    /// Who the measured traffic belongs to.
    pub subscribers: SubscriberConfig,
    /// Where reports go.
    pub mqtt: MqttConfig,
    /// What `edgeprobe run` captures.
    pub capture: CaptureConfig,
    /// Customer journeys to measure as episodes (`[[journeys]]`).
    pub journeys: Vec<edgeprobe_core::analyze::journey::JourneyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// Names this agent in reports and topics; defaults to the host name.
    pub id: Option<String>,
}

/// A configuration error with its place in the file (1-based line and column; 0 when the
/// error is the whole file's, as one that cannot be read).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            line => write!(f, "{}:{line}:{}: {}", self.file, self.column, self.message),
        }
    }
}

impl AgentConfig {
    /// The core's configuration: the measure section with the subscriber rules.
    pub fn core(&self) -> CoreConfig {
        CoreConfig { subscribers: self.subscribers.clone(), journeys: self.journeys.clone(), ..self.measure.clone() }
    }

    /// The configured id, else the host name, else "edgeprobe".
    pub fn agent_id(&self) -> String {
        self.agent.id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "edgeprobe".into())
        })
    }

    pub fn load(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError { file: file.clone(), line: 0, column: 0, message: format!("cannot read: {e}") }]
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates; returns every error found.
    pub fn parse(file: &str, text: &str) -> Result<Self, Vec<ConfigError>> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            vec![ConfigError { file: file.into(), line, column, message: e.message().trim().to_string() }]
        })?;
        let mut errors = Vec::new();
        for e in config.measure.problems() {
            let (line, column) = find_key(text, "measure", e.field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("measure.{e}") });
        }
        for (field, reason) in config.capture.problems() {
            let (line, column) = find_key(text, "capture", field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("capture.{field}: {reason}") });
        }
        for (field, reason) in config.mqtt.problems() {
            let (line, column) = find_key(text, "mqtt", field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("mqtt.{field}: {reason}") });
        }
        // Every part of a window's report waits in the spool until the broker has it: an edge
        // agent's spool smaller than a full window loses parts before they are sent. (A
        // gateway's window is a home's few devices, whatever max_subscribers allows.)
        let window = config.measure.max_subscribers.saturating_mul(LINE_BYTES);
        let edge = config.subscribers.mode == edgeprobe_core::config::Mode::Edge;
        if edge && config.mqtt.problems().is_empty() && config.mqtt.spool_max_bytes < window {
            let (line, column) = find_key(text, "mqtt", "spool_max_bytes");
            errors.push(ConfigError {
                file: file.into(),
                line,
                column,
                message: format!(
                    "mqtt.spool_max_bytes: a window of measure.max_subscribers = {} lines takes at least {window} bytes \
                     ({LINE_BYTES} a line) and must fit in the spool; raise spool_max_bytes",
                    config.measure.max_subscribers
                ),
            });
        }
        for e in config.subscribers.problems() {
            let (line, column) = find_key(text, "subscribers", e.field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("subscribers.{e}") });
        }
        if let Err(reason) = edgeprobe_core::analyze::journey::validate(&config.journeys) {
            let (line, column) = find_journey(text);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("journeys: {reason}") });
        }
        if let Some(Err(reason)) = config.agent.id.as_deref().map(edgeprobe_wire::mqtt::check_agent_id) {
            let (line, column) = find_key(text, "agent", "id");
            errors.push(ConfigError { file: file.into(), line, column, message: format!("agent.id: {reason}") });
        }
        if let (Some(memory), true) = (physical_memory(), config.measure.problems().is_empty()) {
            let tables = config.measure.table_bytes();
            if tables > u128::from(memory) {
                let (line, column) = find_key(text, "measure", "flow_capacity");
                let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
                errors.push(ConfigError {
                    file: file.into(),
                    line,
                    column,
                    message: format!(
                        "measure: full tables would take {:.1} GiB, more than this machine's {:.1} GiB of memory \
                         (flow_capacity, dns_capacity, stream_capacity x tls_hello_max_bytes, fragment_slots x \
                         fragment_max_bytes, sample_capacity)",
                        gib(tables),
                        gib(u128::from(memory))
                    ),
                });
            }
        }
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    }
}

/// The machine's physical memory in bytes, from /proc/meminfo.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// The first `[[journeys]]` table, where a journey error is reported.
fn find_journey(text: &str) -> (usize, usize) {
    text.lines().position(|l| l.trim() == "[[journeys]]").map_or((1, 1), |i| (i + 1, 1))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

/// Where `key` is set inside `[section]`; the section header when the key is absent.
fn find_key(text: &str, section: &str, key: &str) -> (usize, usize) {
    let mut in_section = false;
    let mut section_line = (1, 1);
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_section = t.trim_end() == format!("[{section}]");
            if in_section {
                section_line = (i + 1, 1);
            }
        } else if in_section && t.split('=').next().is_some_and(|k| k.trim() == key) {
            return (i + 1, line.len() - t.len() + 1);
        }
    }
    section_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = AgentConfig::parse("a.toml", "[measure]\nflow_capacity = 10\n  flow_capasity = 3\n").unwrap_err();
        assert_eq!((err[0].line, err[0].column), (3, 3));
        assert!(err[0].message.contains("flow_capasity"), "{}", err[0].message);
    }

    #[test]
    fn invalid_value_is_located() {
        let err = AgentConfig::parse("a.toml", "[agent]\nid = \"x\"\n[measure]\ndns_capacity = 0\n").unwrap_err();
        assert_eq!(err[0].line, 4);
        assert!(err[0].to_string().starts_with("a.toml:4:1: measure.dns_capacity"));
    }

    /// Every check that `run` would otherwise fail on, or lose data to, names its field.
    #[test]
    fn what_run_would_fail_on_is_refused() {
        let dir = std::env::temp_dir().join(format!("edgeprobe-config-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "pw\n").unwrap();
        let (d, s) = (dir.display(), secret.display());
        let cases = [
            ("[agent]\nid = \"gw/1\"\n", "agent.id"),
            ("[agent]\nid = \"gw-#\"\n", "agent.id"),
            ("[agent]\nid = \"+\"\n", "agent.id"),
            ("[agent]\nid = \"\"\n", "agent.id"),
            ("[measure]\nflow_capacity = 2147483647\n", "full tables would take"),
            ("[measure]\ndns_capacity = 1000000000000\n", "full tables would take"),
            (&format!("[mqtt]\nusername = \"u\"\npassword_file = \"{d}\"\n"), "not a regular file"),
            (&format!("[mqtt]\nusername = \"u\"\npassword_file = \"{d}/missing\"\n"), "mqtt.password_file"),
            (&format!("[mqtt]\npassword_file = \"{s}\"\n"), "mqtt.username"),
            ("[mqtt]\nurl = \"mqtts://127.0.0.1:8883\"\n", "mqtt.ca_file"),
            (&format!("[mqtt]\nca_file = \"{d}/ca.pem\"\n"), "mqtt.ca_file"),
            (&format!("[mqtt]\nca_file = \"{s}\"\n"), "mqtt.ca_file"),
            ("[mqtt]\nspool_dir = \"/etc/passwd\"\n", "mqtt.spool_dir"),
            ("[mqtt]\nspool_dir = \"/etc/passwd/spool\"\n", "mqtt.spool_dir"),
        ];
        for (text, expected) in cases {
            let err = AgentConfig::parse("a.toml", text).expect_err(text);
            assert!(err.iter().any(|e| e.message.contains(expected)), "{text}: {err:?}");
        }
        let fine = format!(
            "[agent]\nid = \"gw-1.lab_a\"\n[mqtt]\nusername = \"u\"\npassword_file = \"{s}\"\nspool_dir = \"{d}/spool\"\n"
        );
        AgentConfig::parse("a.toml", &fine).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_spool_must_hold_a_window_of_lines() {
        let edge = "[measure]\nmax_subscribers = 50000\n[subscribers]\nmode = \"edge\"\n";
        let err = AgentConfig::parse("a.toml", edge).unwrap_err();
        assert!(err[0].message.starts_with("mqtt.spool_max_bytes: a window of"), "{}", err[0].message);
        assert!(AgentConfig::parse("a.toml", &format!("{edge}[mqtt]\nspool_max_bytes = 33554432\n")).is_ok());
        let gateway = "[measure]\nmax_subscribers = 50000\n[mqtt]\nspool_max_bytes = 4096\n";
        assert!(AgentConfig::parse("a.toml", gateway).is_ok(), "a gateway's window is a home's devices");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = AgentConfig::parse("a.toml", "[measure]\ndns_timeout_secs = \"soon\"\n").unwrap_err();
        assert_eq!(err[0].line, 2);
    }
}
