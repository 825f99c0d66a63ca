//! Pushed agent configuration: journey definitions and opt-outs that the collector publishes
//! to every agent on its retained `edgeprobe/v1/agents/{id}/config` topic. The current config
//! lives in the database, so collectors sharing one agree on it and a restart keeps it. A
//! reconcile loop publishes it to each agent that does not report running it, once per agent
//! and version (again after `REPUBLISH`, in case a publish was lost), and at once when the
//! config changes. Agents check it again and report the version they run, or why they refused.

use crate::http::state::ApiState;
use crate::store::Result;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

const RECONCILE_EVERY: Duration = Duration::from_secs(5);
const REPUBLISH: Duration = Duration::from_secs(300);

/// A retained message for the broker: topic and payload.
pub type Outgoing = (String, Vec<u8>);

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
