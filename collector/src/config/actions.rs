//! What the collector does about what it finds, and what comes of it: next best actions and
//! offers, the hold-out, webhooks and their outbox, and how results are measured.

use super::CollectorConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// At most this many customer contacts (notices, help offers) per customer ...
    pub max_contacts: u32,
    /// ... within this many hours.
    pub contact_window_hours: u64,
    /// Segments whose service problems open a ticket rather than wait.
    pub ticket_segments: Vec<String>,
    /// Plans that do the same, whatever the segment (premium tiers with an SLA).
    pub ticket_plans: Vec<String>,
    /// Actions on a customer's own journey failures, whether or not an incident explains them
    /// (`[[actions.journey_rules]]`).
    pub journey_rules: Vec<JourneyRule>,
    /// The channels each contacting action may use, in order of preference; a customer's own
    /// `contact_channels` narrow them, and an action left with none contacts nobody.
    pub channels: BTreeMap<String, Vec<String>>,
    /// The share of customers eligible for one of `holdout_actions` who are picked at random
    /// (the same pick on every collector) to get nothing: the control group that measures
    /// what the action changes. 0 turns it off.
    pub holdout_share: f64,
    pub holdout_actions: Vec<String>,
}

/// Action types that may contact the customer.
pub const CONTACT_ACTIONS: [&str; 4] = ["outage_notice", "wifi_help", "service_ticket", "offer"];

/// "A premium customer whose video starts failed three times today gets a service ticket."
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyRule {
    pub journey: String,
    /// Failed or timed-out episodes ...
    pub failures: u64,
    /// ... within this many hours.
    #[serde(default = "default_within_hours")]
    pub within_hours: u64,
    /// Customers of these segments or plans; both empty: every customer.
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub plans: Vec<String>,
    /// `service_ticket`, `wifi_help` or `outage_notice`.
    pub action: String,
    /// The action reaches out to the customer, so opt-outs and the contact cap apply. A
    /// ticket raised from the network's own data is proactive, so the default is true.
    #[serde(default = "default_true")]
    pub contact: bool,
}

fn default_within_hours() -> u64 {
    24
}

fn default_true() -> bool {
    true
}

impl JourneyRule {
    pub fn applies_to(&self, segment: &str, plan: &str) -> bool {
        (self.segments.is_empty() && self.plans.is_empty())
            || self.segments.iter().any(|s| s.eq_ignore_ascii_case(segment))
            || self.plans.iter().any(|p| p.eq_ignore_ascii_case(plan))
    }
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            max_contacts: 2,
            contact_window_hours: 24,
            ticket_segments: vec!["business".into(), "premium".into()],
            ticket_plans: Vec::new(),
            journey_rules: Vec::new(),
            channels: BTreeMap::from([
                ("outage_notice".to_string(), vec!["sms".into(), "app".into(), "email".into()]),
                ("wifi_help".to_string(), vec!["app".into(), "email".into(), "call".into()]),
                ("offer".to_string(), vec!["email".into(), "app".into()]),
            ]),
            holdout_share: 0.05,
            holdout_actions: vec!["outage_notice".into(), "wifi_help".into(), "offer".into()],
        }
    }
}

/// Offers outside incidents: a plan upgrade for a line whose access link's queue bloats under
/// load again and again, a partner's Wi-Fi extender for one whose home side does. Off until
/// an operator turns them on: selling is a commercial decision.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OffersConfig {
    pub enabled: bool,
    /// A side must have bloated in at least `min_windows` windows of the last `lookback_hours`.
    pub lookback_hours: u64,
    pub min_windows: u64,
    /// At most one offer of each kind per customer in this many days.
    pub every_days: u64,
    /// Customers of these segments only; empty: every segment.
    pub segments: Vec<String>,
    /// Customers worth at least this much a month.
    pub min_monthly_value: f64,
    /// The plan to offer, by the customer's plan; a plan not listed gets no upgrade offer.
    pub plan_upgrades: BTreeMap<String, String>,
    /// The partner's Wi-Fi extender, as the reason names it; empty: no extender offers.
    pub extender: String,
}

impl Default for OffersConfig {
    fn default() -> Self {
        OffersConfig {
            enabled: false,
            lookback_hours: 24,
            min_windows: 3,
            every_days: 30,
            segments: Vec::new(),
            min_monthly_value: 0.0,
            plan_upgrades: BTreeMap::new(),
            extender: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomesConfig {
    /// An action's recovery compares the incident's metric over this many minutes of windows
    /// before the window that decided it ...
    pub before_minutes: u64,
    /// ... with this many after it; it is measured once the windows after are evaluated.
    pub after_minutes: u64,
    /// An incident that opens again within this many minutes of resolving came back.
    pub recurrence_minutes: u64,
    /// Customer contacts (outcomes of kind `contact`) this many days after an action count
    /// against it.
    pub contact_days: u64,
}

impl Default for OutcomesConfig {
    fn default() -> Self {
        OutcomesConfig { before_minutes: 60, after_minutes: 1440, recurrence_minutes: 4320, contact_days: 7 }
    }
}

/// What a webhook may be sent.
pub const WEBHOOK_EVENTS: [&str; 4] = ["incident_opened", "incident_updated", "incident_resolved", "action_proposed"];

/// One receiver: an operator's ticketing, CRM, notification gateway or Alertmanager-style
/// integration. Incidents go out in Alertmanager's webhook format, actions as this collector's
/// action JSON (README, Delivery).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the receiver in the outbox, the API and `/metrics`; stays the same across restarts.
    pub name: String,
    /// `http://` or `https://` (public CAs).
    pub url: String,
    /// Which of [`WEBHOOK_EVENTS`] it gets.
    pub events: Vec<String>,
    /// For `action_proposed`: the action types it gets; empty: every one but `none` and
    /// `holdout`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Key of the HMAC-SHA256 signature header; without it, requests are not signed.
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra request headers (an `Authorization` the receiver wants, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

fn default_webhook_timeout() -> u64 {
    10
}

impl WebhookConfig {
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    pub fn wants_action(&self, action: &str) -> bool {
        self.wants("action_proposed")
            && if self.actions.is_empty() {
                action != "none" && action != "holdout"
            } else {
                self.actions.iter().any(|a| a == action)
            }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Messages waiting in the outbox, for all webhooks together; past this, new ones are
    /// dropped and counted, so a receiver gone for good cannot fill the disk.
    pub max_pending: u64,
    /// The first retry waits this long; each one after waits twice as long, up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A message not delivered within this many hours is marked failed.
    pub give_up_hours: u64,
    /// This collector's URL as receivers should link to it (`externalURL`, `generatorURL`);
    /// empty: `http://` and the listen address.
    pub external_url: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_pending: 100_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            give_up_hours: 24,
            external_url: String::new(),
        }
    }
}

/// Every problem in these sections, as (field, reason).
pub(super) fn problems(config: &CollectorConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut fail = |f: &str, r: &str| errors.push((f.to_string(), r.to_string()));
    for (i, r) in config.actions.journey_rules.iter().enumerate() {
        let field = format!("actions.journey_rules[{i}]");
        if r.journey.is_empty() || r.failures == 0 || r.within_hours == 0 {
            fail(&field, "needs a journey, failures of at least 1 and within_hours of at least 1");
        }
        if !["service_ticket", "wifi_help", "outage_notice"].contains(&r.action.as_str()) {
            fail(&field, "action must be service_ticket, wifi_help or outage_notice");
        }
    }
    for (action, channels) in &config.actions.channels {
        if !CONTACT_ACTIONS.contains(&action.as_str()) {
            fail(
                &format!("actions.channels.{action}"),
                "channels are for outage_notice, wifi_help, service_ticket and offer",
            );
        }
        if let Some(c) = channels.iter().find(|c| !crate::customers::CHANNELS.contains(&c.as_str())) {
            fail(&format!("actions.channels.{action}"), &format!("{c:?} is not one of email, sms, app, call"));
        }
    }
    if !(0.0..=0.5).contains(&config.actions.holdout_share) {
        fail("actions.holdout_share", "must be from 0 to 0.5");
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, w) in config.webhooks.iter().enumerate() {
        let field = format!("webhooks[{i}]");
        let label = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        if w.name.is_empty() || !w.name.bytes().all(label) || !names.insert(w.name.as_str()) {
            fail(&field, "each webhook needs a name of its own, of letters, digits, '-', '_' and '.'");
        }
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            fail(&field, "url must start with http:// or https://");
        }
        if w.events.is_empty() || w.events.iter().any(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            fail(
                &field,
                "events must name some of incident_opened, incident_updated, incident_resolved, action_proposed",
            );
        }
        if w.secret.as_ref().is_some_and(|s| s.len() < 16) {
            fail(&field, "a secret must be at least 16 characters");
        }
        let token = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if w.headers.iter().any(|(n, v)| !token(n) || v.chars().any(char::is_control)) {
            fail(&field, "header names are letters, digits and '-'; values hold no control characters");
        }
        if w.timeout_secs == 0 || w.timeout_secs > 300 {
            fail(&field, "timeout_secs must be from 1 to 300");
        }
    }
    let f = &config.offers;
    if f.enabled && (f.lookback_hours == 0 || f.min_windows == 0 || f.every_days == 0) {
        fail("offers", "lookback_hours, min_windows and every_days must be at least 1");
    }
    let o = &config.outcomes;
    if o.before_minutes == 0 || o.after_minutes == 0 || o.contact_days == 0 {
        fail("outcomes", "before_minutes, after_minutes and contact_days must be at least 1");
    }
    let d = &config.delivery;
    if d.max_pending == 0 || d.retry_initial_ms == 0 || d.retry_max_ms < d.retry_initial_ms || d.give_up_hours == 0 {
        fail(
            "delivery",
            "max_pending, retry_initial_ms and give_up_hours must be at least 1, retry_max_ms at least retry_initial_ms",
        );
    }
    errors
}
