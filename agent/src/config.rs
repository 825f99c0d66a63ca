//! The agent's TOML configuration. Unknown keys are errors, and every error names the line and
//! column it was found at, so a field engineer can fix a file on a router without guessing.

use crate::capture::live::CaptureConfig;
use crate::publish::mqtt::MqttConfig;
use edgeprobe_core::CoreConfig;
use edgeprobe_core::subscriber::SubscriberConfig;
use serde::Deserialize;
use std::path::Path;

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
    pub journeys: Vec<edgeprobe_core::journey::JourneyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// Names this agent in reports and topics; defaults to the host name.
    pub id: Option<String>,
}

/// A configuration error with its place in the file (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
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
        if let Err(e) = config.measure.validate() {
            let (line, column) = find_key(text, "measure", e.field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("measure.{e}") });
        }
        if let Err((field, reason)) = config.capture.validate() {
            let (line, column) = find_key(text, "capture", field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("capture.{field}: {reason}") });
        }
        if let Err((field, reason)) = config.mqtt.validate() {
            let (line, column) = find_key(text, "mqtt", field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("mqtt.{field}: {reason}") });
        }
        if let Err(e) = config.subscribers.validate() {
            let (line, column) = find_key(text, "subscribers", e.field);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("subscribers.{e}") });
        }
        if let Err(reason) = edgeprobe_core::journey::validate(&config.journeys) {
            let (line, column) = find_journey(text);
            errors.push(ConfigError { file: file.into(), line, column, message: format!("journeys: {reason}") });
        }
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    }
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

    #[test]
    fn wrong_type_is_an_error() {
        let err = AgentConfig::parse("a.toml", "[measure]\ndns_timeout_secs = \"soon\"\n").unwrap_err();
        assert_eq!(err[0].line, 2);
    }
}
