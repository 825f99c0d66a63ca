//! Pushed agent configuration: journey definitions and opt-outs that the collector publishes
//! to every agent on its retained `edgeprobe/v1/agents/{id}/config` topic. The current config
//! lives in the database, so collectors sharing one agree on it and a restart keeps it. A
//! reconcile loop publishes it to each agent that does not report running it, once per agent
//! and version (again after `REPUBLISH`, in case a publish was lost), and at once when the
//! config changes. Agents check it again and report the version they run, or why they refused.

use crate::http::state::ApiState;
use crate::store::{Result, Store};
use edgeprobe_core::config::PushedConfig;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

const RECONCILE_EVERY: Duration = Duration::from_secs(5);
const REPUBLISH: Duration = Duration::from_secs(300);

/// A retained message for the broker: topic and payload.
pub type Outgoing = (String, Vec<u8>);

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

/// Publishes the current config to agents not running it, until `stop`.
pub async fn run(
    state: Arc<ApiState>,
    out: mpsc::Sender<Outgoing>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut published: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let st = state.clone();
        let due = tokio::task::spawn_blocking(move || -> Result<Vec<(String, String, String)>> {
            let mut store = st.store.lock().unwrap_or_else(|p| p.into_inner());
            let Some((version, body, _)) = store.agent_config()? else { return Ok(Vec::new()) };
            let agents = store.agents()?;
            Ok(agents
                .into_iter()
                .filter(|a| a.config_version != version)
                .map(|a| (a.agent_id, version.clone(), body.clone()))
                .collect())
        })
        .await;
        if let Ok(Ok(due)) = due {
            for (agent, version, body) in due {
                let fresh = published.get(&agent).is_some_and(|(v, at)| *v == version && at.elapsed() < REPUBLISH);
                if fresh {
                    continue;
                }
                let topic = edgeprobe_wire::mqtt::config_topic(&agent);
                if out.send((topic, body.into_bytes())).await.is_err() {
                    return;
                }
                published.insert(agent, (version, Instant::now()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
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
        assert!(parse(bad).unwrap_err().to_string().contains("exactly one of dns, sni, http_host or port"));
        assert!(parse(serde_json::json!({"version": "x", "colour": 1})).unwrap_err().to_string().contains("colour"));
    }
}
