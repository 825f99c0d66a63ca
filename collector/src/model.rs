//! What the collector stores and serves, beyond the agents' reports: incidents, next best
//! actions and agents. These are the JSON shapes of the HTTP API.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    AccessNode,
    Region,
    Service,
    Resolver,
    HomeNetwork,
    Customer,
    AgentsOffline,
    /// Round trips rise well above the line's idle baseline under load: a deep queue, at home
    /// (`side` home) or on the access link (`side` access), for a line or a whole node.
    Bufferbloat,
}

impl IncidentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::AccessNode => "access_node",
            IncidentKind::Region => "region",
            IncidentKind::Service => "service",
            IncidentKind::Resolver => "resolver",
            IncidentKind::HomeNetwork => "home_network",
            IncidentKind::Customer => "customer",
            IncidentKind::AgentsOffline => "agents_offline",
            IncidentKind::Bufferbloat => "bufferbloat",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentKind> {
        Some(match s {
            "access_node" => IncidentKind::AccessNode,
            "region" => IncidentKind::Region,
            "service" => IncidentKind::Service,
            "resolver" => IncidentKind::Resolver,
            "home_network" => IncidentKind::HomeNetwork,
            "customer" => IncidentKind::Customer,
            "agents_offline" => IncidentKind::AgentsOffline,
            "bufferbloat" => IncidentKind::Bufferbloat,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub id: i64,
    pub kind: IncidentKind,
    /// What failed, e.g. `{"access_node": "OLT-7"}`.
    pub scope: BTreeMap<String, String>,
    /// `pending` (bad, not yet for long enough), `open` or `resolved`.
    pub state: String,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// Unix ms; null while pending.
    pub opened_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// The first and the latest window (start, Unix ms) that counted for this incident.
    pub first_window: i64,
    pub last_window: i64,
    /// Consecutive bad windows while pending or open; consecutive good ones while recovering.
    pub bad_windows: i64,
    pub good_windows: i64,
    pub metric: String,
    pub evidence: serde_json::Value,
    pub probable_cause: String,
    pub customers: Vec<String>,
    pub affected_customers: i64,
    pub value_at_risk: f64,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
}

impl Incident {
    /// A new pending incident, first seen in the window starting at `window`.
    pub fn new(kind: IncidentKind, scope: BTreeMap<String, String>, window: i64) -> Incident {
        Incident {
            id: 0,
            kind,
            scope,
            state: "pending".into(),
            severity: "minor".into(),
            opened_at: None,
            resolved_at: None,
            first_window: window,
            last_window: window,
            bad_windows: 0,
            good_windows: 0,
            metric: String::new(),
            evidence: serde_json::json!({}),
            probable_cause: String::new(),
            customers: Vec::new(),
            affected_customers: 0,
            value_at_risk: 0.0,
            acked_at: None,
            acked_by: None,
        }
    }

    /// One key per kind and scope; at most one unresolved incident has it.
    pub fn scope_key(kind: IncidentKind, scope: &BTreeMap<String, String>) -> String {
        let parts: Vec<String> = scope.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}:{}", kind.as_str(), parts.join(","))
    }

    pub fn severity_rank(&self) -> u8 {
        match self.severity.as_str() {
            "critical" => 3,
            "major" => 2,
            _ => 1,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Action {
    pub id: i64,
    /// The incident behind it; none for an action a journey rule chose.
    pub incident_id: Option<i64>,
    /// The journey rule behind it, as `journey:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub customer_id: String,
    /// `outage_notice`, `wifi_help`, `service_ticket`, `smart_queue`, `hold_marketing`,
    /// `holdout` (picked at random to get nothing, as the control) or `none`.
    pub action: String,
    /// What the incident or rule called for before the customer's rules and the hold-out:
    /// differs from `action` for a hold-out and for a contact the customer refused.
    pub intended: String,
    /// Start of the window that decided it: the time its recovery is measured from.
    pub window_ms: i64,
    /// Whether the action contacts the customer (and so counts against the contact cap).
    pub contact: bool,
    /// For a contact, the channels it may use, in order of preference.
    pub channels: Vec<String>,
    pub reason: String,
    pub created_ms: i64,
    /// When the incident behind it resolved; a marketing hold ends then.
    pub ended_ms: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Agent {
    pub agent_id: String,
    pub online: bool,
    /// Offline by a clean shutdown (not an outage).
    pub stopped: bool,
    pub boot_id: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// Unix ms of the last state message.
    pub state_ms: i64,
    pub last_report_ms: Option<i64>,
    pub last_window_ms: Option<i64>,
    pub reports: i64,
    pub capture: serde_json::Value,
    pub health: serde_json::Value,
    /// Access nodes of the customers this agent has reported on.
    pub access_nodes: Vec<String>,
    /// The pushed configuration the agent runs (empty: its own file), and why it refused the
    /// latest push, if it did.
    pub config_version: String,
    pub config_error: String,
    /// Reports waiting at the agent for the broker, as last known: from its latest state
    /// message if that came after its latest report, else the latest report's `spool_depth`
    /// less the report itself (which has evidently arrived). `None` before either says.
    pub spool_waiting: Option<i64>,
}

/// An agent's birth message or last will, from its retained `state` topic.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct AgentState {
    pub online: bool,
    /// Offline by a clean shutdown rather than the last will.
    #[serde(default)]
    pub stopped: bool,
    #[serde(default)]
    pub boot_id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub config_version: String,
    #[serde(default)]
    pub config_error: String,
    /// Reports the agent's spool held unacknowledged when it sent this (not in a last will).
    #[serde(default)]
    pub spool_depth: Option<u64>,
}
