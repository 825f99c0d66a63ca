//! The agent configuration the collector pushes: checked as the agent will check it, named by
//! a version (a hash of its content when none is given), and kept in the store so that
//! collectors sharing one agree on it. `http::push` publishes it.

use crate::store::{Result, Store};
use edgeprobe_core::config::PushedConfig;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Why a config cannot be pushed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("a config is an object with journeys and opt_out")]
    NotAnObject,
    #[error("{0}")]
    Json(serde_json::Error),
    /// What the agent's own check says of it.
    #[error("{0}")]
    Invalid(String),
    #[error("{size} bytes encoded, over the {limit} limit")]
    TooLarge { size: usize, limit: usize },
}

/// Checks a config given as JSON or TOML (`version` optional: a hash of the content names it
/// when absent); returns it with its version.
pub fn parse(value: serde_json::Value) -> std::result::Result<PushedConfig, ConfigError> {
    let mut value = value;
    let obj = value.as_object_mut().ok_or(ConfigError::NotAnObject)?;
    if !obj.contains_key("version") {
        let content = serde_json::to_vec(&(obj.get("journeys"), obj.get("opt_out"))).expect("json serializes");
        let digest = Sha256::digest(&content);
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        obj.insert("version".into(), serde_json::Value::String(hex));
    }
    let config: PushedConfig = serde_json::from_value(value).map_err(ConfigError::Json)?;
    config.validate().map_err(ConfigError::Invalid)?;
    let size = serde_json::to_vec(&config).map_or(usize::MAX, |v| v.len());
    let limit = edgeprobe_core::config::MAX_PUSHED_CONFIG_BYTES;
    if size > limit {
        return Err(ConfigError::TooLarge { size, limit });
    }
    Ok(config)
}

/// Reads the `[agent_config] file` (TOML, as the agent's own `[[journeys]]` plus `opt_out`).
pub fn load(path: &Path) -> anyhow::Result<PushedConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let value: serde_json::Value = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse(value).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Makes `config` the one pushed; true if it changed.
pub fn install(store: &mut Store, config: &PushedConfig, now_ms: i64) -> Result<bool> {
    let body = serde_json::to_string(config)?;
    store.save_agent_config(&config.version, &body, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_loads_and_a_version_is_derived_when_absent() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/journeys-push.example.toml");
        let config = load(&example).unwrap();
        assert_eq!(config.version, "2026-11-journeys-1");
        assert_eq!(config.journeys.len(), 3);

        let unnamed = serde_json::json!({"journeys": [{"name": "a", "steps": [{"name": "c", "port": 443}]}]});
        let a = parse(unnamed.clone()).unwrap();
        assert_eq!(a.version.len(), 12);
        assert_eq!(parse(unnamed).unwrap().version, a.version, "the same content, the same version");
        let other = serde_json::json!({"journeys": [{"name": "b", "steps": [{"name": "c", "port": 443}]}]});
        assert_ne!(parse(other).unwrap().version, a.version);

        let bad = serde_json::json!({"version": "x", "journeys": [{"name": "a", "steps": [{"name": "c"}]}]});
        assert!(parse(bad).unwrap_err().to_string().contains("exactly one of dns, sni, http_host, port or quic_port"));
        assert!(parse(serde_json::json!({"version": "x", "colour": 1})).unwrap_err().to_string().contains("colour"));
    }
}
