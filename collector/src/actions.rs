//! Next best actions: for each customer an open incident affects, what to do and why. The
//! choice follows the incident's kind and the customer's segment; a contact is never suggested
//! to a customer who opted out, or beyond the contact cap; and every affected customer gets a
//! marketing hold until the incident resolves. Journey rules act on a customer's own failed
//! journeys, whether or not an incident explains them.

use crate::config::{ActionsConfig, JourneyRule};
use crate::customers::Customer;
use crate::model::{Action, Incident, IncidentKind};
use crate::store::{Result, Store};

/// The suggestion before the customer's contact preferences are applied.
fn proposal(incident: &Incident, customer: &Customer, config: &ActionsConfig) -> (&'static str, bool, String) {
    let scope = incident.scope.values().cloned().collect::<Vec<_>>().join(", ");
    let ticket_segment = config.ticket_segments.iter().any(|s| s.eq_ignore_ascii_case(&customer.segment))
        || config.ticket_plans.iter().any(|p| p.eq_ignore_ascii_case(&customer.plan));
    match incident.kind {
        IncidentKind::AccessNode | IncidentKind::Region | IncidentKind::Resolver | IncidentKind::AgentsOffline => (
            "outage_notice",
            true,
            format!(
                "{} incident on {scope} affects this customer; a proactive notice heads off calls and churn",
                incident.kind.as_str().replace('_', " ")
            ),
        ),
        IncidentKind::Service if ticket_segment => (
            "service_ticket",
            false,
            format!(
                "{} customer on plan {} affected by degraded service {scope}; a ticket tracks it with the provider",
                customer.segment, customer.plan
            ),
        ),
        IncidentKind::Service => (
            "none",
            false,
            format!("service {scope} is degraded for many customers; nothing on this customer's line to fix"),
        ),
        IncidentKind::HomeNetwork => (
            "wifi_help",
            true,
            "home-side round trips are slow while the network side is fine: in-home Wi-Fi or devices are the likely cause"
                .to_string(),
        ),
        IncidentKind::Bufferbloat if incident.scope.contains_key("access_node") => (
            "none",
            false,
            format!("the queue shared at {scope} bloats for most of its lines under load: capacity or queue management at the node, nothing on this line"),
        ),
        IncidentKind::Bufferbloat if incident.scope.get("side").is_some_and(|s| s == "home") => (
            "wifi_help",
            true,
            "round trips inside the home rise far above their idle level whenever the line is busy: the Wi-Fi or the gateway's LAN queue; Wi-Fi help (channel, placement, a mesh point, or queue management on the gateway)"
                .to_string(),
        ),
        IncidentKind::Bufferbloat => (
            "smart_queue",
            false,
            "the access link's queue fills under load and delays everything else on the line: enable smart queue management (AQM) on the line's profile; if the line is saturated daily, a plan with more capacity"
                .to_string(),
        ),
        IncidentKind::Customer => (
            "service_ticket",
            false,
            format!(
                "only this customer is degraded ({}) and nothing wider explains it: check the line",
                incident.metric
            ),
        ),
    }
}

/// What to do for one customer, once their contact rules are applied.
struct Choice {
    kind: &'static str,
    intended: &'static str,
    contact: bool,
    channels: Vec<String>,
    reason: String,
}

/// A contact becomes `none`, with the reason, for a customer who opted out, accepts none of the
/// channels the action may use, or was contacted as often as the cap allows; otherwise it
/// names the channels to use, the action's preference narrowed to the customer's.
fn respect_preferences(
    store: &mut Store,
    customer: &Customer,
    config: &ActionsConfig,
    (kind, contact, reason): (&'static str, bool, String),
    now_ms: i64,
) -> Result<Choice> {
    let refuse =
        |why: String| Choice { kind: "none", intended: kind, contact: false, channels: Vec::new(), reason: why };
    if !contact {
        return Ok(Choice { kind, intended: kind, contact, channels: Vec::new(), reason });
    }
    if customer.contact_opt_out {
        return Ok(refuse(format!("would suggest {kind}, but the customer opted out of contact ({reason})")));
    }
    let accepted = &customer.contact_channels;
    // An action without channels of its own (a ticket a journey rule raises) may use any the
    // customer accepts.
    let preferred = config.channels.get(kind).unwrap_or(accepted);
    let channels: Vec<String> =
        preferred.iter().filter(|c| accepted.is_empty() || accepted.contains(c)).cloned().collect();
    if channels.is_empty() && config.channels.contains_key(kind) {
        let why = format!(
            "would suggest {kind} by {}, but the customer accepts contact only by {} ({reason})",
            or_nothing(preferred),
            or_nothing(accepted)
        );
        return Ok(refuse(why));
    }
    let since = now_ms - (config.contact_window_hours as i64) * 3_600_000;
    let recent = store.contacts_since(&customer.customer_id, since)?;
    if recent >= config.max_contacts as i64 {
        return Ok(refuse(format!(
            "would suggest {kind}, but the customer was contacted {recent} times in the last {} h (cap {})",
            config.contact_window_hours, config.max_contacts
        )));
    }
    let reason = match channels.is_empty() {
        true => reason,
        false => format!("{reason}; by {}", channels.join(", then ")),
    };
    Ok(Choice { kind, intended: kind, contact, channels, reason })
}

/// Whether this customer is in the hold-out for `subject` (an incident, or a rule's window):
/// a hash, not a draw, so every collector and every re-evaluation picks the same customers.
fn held_out(config: &ActionsConfig, customer: &Customer, subject: &str) -> bool {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(&customer.customer_id).chain_update([0]).chain_update(subject).finalize();
    let draw = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) as f64 / 2f64.powi(64);
    draw < config.holdout_share
}

/// A choice turned into the hold-out's nothing, when the customer is picked for it.
fn holdout(config: &ActionsConfig, customer: &Customer, subject: &str, choice: Choice) -> Choice {
    if !config.holdout_actions.iter().any(|a| a == choice.kind) || !held_out(config, customer, subject) {
        return choice;
    }
    let reason = format!(
        "picked at random for the hold-out ({:.0}% of eligible customers get nothing, to measure what {} changes); \
         would be: {}",
        config.holdout_share * 100.0,
        choice.kind,
        choice.reason
    );
    Choice { kind: "holdout", intended: choice.intended, contact: false, channels: Vec::new(), reason }
}

fn or_nothing(channels: &[String]) -> String {
    if channels.is_empty() { "no channel".into() } else { channels.join(" or ") }
}

/// Applies the journey rules to a customer who had failed episodes of `journey` in the window
/// ending at `window_end`: where the customer's failures within a rule's hours reach its count,
/// and the rule has not acted for them within those hours, its action is stored. Returns
/// those added.
pub fn journey_rules(
    store: &mut Store,
    customer: &Customer,
    journey: &str,
    (window_start, window_end): (i64, i64),
    config: &ActionsConfig,
    now_ms: i64,
) -> Result<Vec<Action>> {
    let mut added = Vec::new();
    for rule in config.journey_rules.iter().filter(|r| r.journey == journey) {
        if !rule.applies_to(&customer.segment, &customer.plan) {
            continue;
        }
        let key = format!("journey:{}", rule.journey);
        let span = rule.within_hours as i64 * 3_600_000;
        if store.has_rule_action(&customer.customer_id, &key, now_ms - span)? {
            continue;
        }
        let failures = store.journey_failures(&customer.subscriber_id, journey, window_end - span, window_end)?;
        if failures < rule.failures {
            continue;
        }
        let proposal = (action_name(rule), rule.contact, rule_reason(rule, customer, failures));
        let choice = respect_preferences(store, customer, config, proposal, now_ms)?;
        let choice = holdout(config, customer, &format!("{key}@{window_start}"), choice);
        let action =
            Action { incident_id: None, rule: Some(key), ..new_action(customer, choice, window_start, now_ms) };
        added.extend(store.insert_action(&action)?.map(|id| Action { id, ..action }));
    }
    Ok(added)
}

fn action_name(rule: &JourneyRule) -> &'static str {
    match rule.action.as_str() {
        "wifi_help" => "wifi_help",
        "outage_notice" => "outage_notice",
        _ => "service_ticket",
    }
}

fn rule_reason(rule: &JourneyRule, customer: &Customer, failures: u64) -> String {
    format!(
        "{} customer on plan {}: {failures} {:?} journeys failed or timed out in the last {} h (rule: {} or more)",
        customer.segment, customer.plan, rule.journey, rule.within_hours, rule.failures
    )
}

fn new_action(customer: &Customer, choice: Choice, window_ms: i64, now_ms: i64) -> Action {
    Action {
        id: 0,
        incident_id: None,
        rule: None,
        customer_id: customer.customer_id.clone(),
        action: choice.kind.to_string(),
        intended: choice.intended.to_string(),
        window_ms,
        contact: choice.contact,
        channels: choice.channels,
        reason: choice.reason,
        created_ms: now_ms,
        ended_ms: None,
    }
}

/// Stores the actions an open incident calls for, for customers who have none for it yet.
/// Returns those added.
pub fn suggest(store: &mut Store, incident: &Incident, config: &ActionsConfig, now_ms: i64) -> Result<Vec<Action>> {
    let customers = store.customers_by_id(&incident.customers)?;
    let mut added = Vec::new();
    for customer in customers {
        if store.has_action(incident.id, &customer.customer_id)? {
            continue;
        }
        let proposed = proposal(incident, &customer, config);
        let choice = respect_preferences(store, &customer, config, proposed, now_ms)?;
        let choice = holdout(config, &customer, &format!("incident:{}", incident.id), choice);
        let base =
            Action { incident_id: Some(incident.id), ..new_action(&customer, choice, incident.last_window, now_ms) };
        added.extend(store.insert_action(&base)?.map(|id| Action { id, ..base.clone() }));
        let hold = Action {
            action: "hold_marketing".into(),
            intended: "hold_marketing".into(),
            contact: false,
            channels: Vec::new(),
            reason: format!(
                "open incident #{} ({}) affects this customer: hold marketing until it resolves",
                incident.id,
                incident.kind.as_str()
            ),
            ..base
        };
        added.extend(store.insert_action(&hold)?.map(|id| Action { id, ..hold }));
    }
    Ok(added)
}

/// Which offer a bloated side calls for.
fn offer_for(side: &str, customer: &Customer, config: &crate::config::OffersConfig) -> Option<(&'static str, String)> {
    match side {
        "access" => config.plan_upgrades.get(&customer.plan).map(|to| {
            (
                "offer:plan_upgrade",
                format!("the access link's queue is the bottleneck: an upgrade from plan {} to {to}", customer.plan),
            )
        }),
        _ if !config.extender.is_empty() => Some((
            "offer:wifi_extender",
            format!("the home side is the bottleneck: the partner's Wi-Fi extender ({})", config.extender),
        )),
        _ => None,
    }
}

/// An offer for a line whose `side` (`home` or `access`) bloated in this window, outside any
/// open incident of the customer's: made when the side bloated in `min_windows` of the last
/// `lookback_hours`, the customer's segment and value allow it, and no offer of its kind was
/// made in `every_days`. Opted-out customers, dependent lines, and partner offers to customers
/// who refuse them get `none` with the reason instead. Returns what was stored.
pub fn offer(
    store: &mut Store,
    config: &crate::config::CollectorConfig,
    customer: &Customer,
    side: &str,
    window_ms: i64,
    now_ms: i64,
) -> Result<Vec<Action>> {
    let o = &config.offers;
    let segment_ok = o.segments.is_empty() || o.segments.iter().any(|s| s.eq_ignore_ascii_case(&customer.segment));
    let Some((rule, what)) =
        offer_for(side, customer, o).filter(|_| segment_ok && customer.monthly_value >= o.min_monthly_value)
    else {
        return Ok(Vec::new());
    };
    if store.has_rule_action(&customer.customer_id, rule, now_ms - o.every_days as i64 * 86_400_000)? {
        return Ok(Vec::new());
    }
    let history = store.line_quality(&customer.customer_id, window_ms - o.lookback_hours as i64 * 3_600_000)?;
    let bloated = history
        .iter()
        .filter(|q| q.window_start <= window_ms && if side == "home" { q.home.bloated } else { q.network.bloated })
        .count() as u64;
    if bloated < o.min_windows {
        return Ok(Vec::new());
    }
    let reason = format!(
        "{} customer worth {:.2} a month: round trips on the {side} side rose far above their idle level under load in \
         {bloated} windows of the last {} h, outside any incident; {what}",
        customer.segment, customer.monthly_value, o.lookback_hours
    );
    let refusal = if customer.dependent {
        Some("a dependent line (parental control) gets no offers")
    } else if rule == "offer:wifi_extender" && !customer.partner_offers {
        Some("the customer takes no partner offers")
    } else {
        None
    };
    let choice = match refusal {
        Some(why) => Choice {
            kind: "none",
            intended: "offer",
            contact: false,
            channels: Vec::new(),
            reason: format!("would offer, but {why} ({reason})"),
        },
        None => {
            let choice = respect_preferences(store, customer, &config.actions, ("offer", true, reason), now_ms)?;
            holdout(&config.actions, customer, &format!("{rule}@{window_ms}"), choice)
        }
    };
    let action = Action { rule: Some(rule.into()), ..new_action(customer, choice, window_ms, now_ms) };
    Ok(store.insert_action(&action)?.map(|id| Action { id, ..action }).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn customer(id: &str, segment: &str, plan: &str, opt_out: bool) -> Customer {
        let c = crate::testing::customer(id);
        Customer { segment: segment.into(), plan: plan.into(), contact_opt_out: opt_out, ..c }
    }

    fn incident(store: &mut Store, kind: IncidentKind, customers: &[&str]) -> Incident {
        let mut i = Incident {
            id: 0,
            kind,
            scope: BTreeMap::from([("scope".to_string(), "x".to_string())]),
            state: "open".into(),
            severity: "major".into(),
            opened_at: Some(0),
            resolved_at: None,
            first_window: 0,
            last_window: 0,
            bad_windows: 3,
            good_windows: 0,
            metric: "connect_network".into(),
            evidence: serde_json::json!({}),
            probable_cause: String::new(),
            customers: customers.iter().map(|c| c.to_string()).collect(),
            affected_customers: customers.len() as i64,
            value_at_risk: 0.0,
            acked_at: None,
            acked_by: None,
        };
        store.save_incident(&mut i).unwrap();
        i
    }

    fn chosen(store: &mut Store, incident: i64, customer: &str) -> (String, String) {
        let a = store.actions(Some(customer), false, 100).unwrap();
        let a = a.iter().find(|a| a.incident_id == Some(incident) && a.action != "hold_marketing").unwrap();
        (a.action.clone(), a.reason.clone())
    }

    #[test]
    fn the_contact_cap_opt_outs_and_plans_shape_the_choice() {
        let dir = crate::testing::test_dir("actions");
        let mut store = Store::open(dir.to_str().unwrap()).unwrap();
        let customers = [
            customer("busy", "residential", "basic", false),
            customer("quiet", "residential", "basic", true),
            customer("sla", "residential", "gold-sla", false),
        ];
        store.upsert_customers(&customers, 0).unwrap();
        let config =
            ActionsConfig { max_contacts: 1, ticket_plans: vec!["gold-sla".into()], ..ActionsConfig::default() };
        let hour = 3_600_000;

        // A first outage: a notice for the customer who may be contacted, none for the one who opted out.
        let first = incident(&mut store, IncidentKind::AccessNode, &["busy", "quiet"]);
        suggest(&mut store, &first, &config, 10 * hour).unwrap();
        assert_eq!(chosen(&mut store, first.id, "busy").0, "outage_notice");
        let (action, why) = chosen(&mut store, first.id, "quiet");
        assert_eq!(action, "none");
        assert!(why.contains("opted out"), "{why}");

        // A second one within the contact window: the cap holds; a day later it would not.
        let second = incident(&mut store, IncidentKind::Region, &["busy"]);
        suggest(&mut store, &second, &config, 12 * hour).unwrap();
        let (action, why) = chosen(&mut store, second.id, "busy");
        assert_eq!(action, "none");
        assert!(why.contains("contacted 1 times in the last 24 h (cap 1)"), "{why}");
        let third = incident(&mut store, IncidentKind::Region, &["busy"]);
        suggest(&mut store, &third, &config, 40 * hour).unwrap();
        assert_eq!(chosen(&mut store, third.id, "busy").0, "outage_notice");

        // A degraded service: a ticket for the SLA plan, nothing for a residential basic line.
        let service = incident(&mut store, IncidentKind::Service, &["sla", "busy"]);
        suggest(&mut store, &service, &config, 41 * hour).unwrap();
        assert_eq!(chosen(&mut store, service.id, "sla").0, "service_ticket");
        assert_eq!(chosen(&mut store, service.id, "busy").0, "none");
        // Channels: the action's preference narrowed to the customer's; none left, no contact.
        let phone_only =
            Customer { contact_channels: vec!["call".into()], ..customer("phone", "residential", "basic", false) };
        let email = Customer {
            contact_channels: vec!["email".into(), "sms".into()],
            ..customer("mail", "residential", "basic", false)
        };
        store.upsert_customers(&[phone_only, email], 0).unwrap();
        let outage = incident(&mut store, IncidentKind::AccessNode, &["phone", "mail"]);
        let added = suggest(&mut store, &outage, &config, 50 * hour).unwrap();
        let notice = added.iter().find(|a| a.customer_id == "mail" && a.action == "outage_notice").unwrap();
        assert_eq!(notice.channels, ["sms", "email"], "the action's order, the customer's channels");
        assert!(notice.id > 0);
        let (action, why) = chosen(&mut store, outage.id, "phone");
        assert_eq!(action, "none");
        assert!(why.contains("accepts contact only by call"), "{why}");
        assert_eq!(store.actions(Some("mail"), false, 10).unwrap()[1].channels, ["sms", "email"], "stored");

        // Suggesting again adds nothing.
        assert!(suggest(&mut store, &service, &config, 42 * hour).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn offers_follow_the_experience_and_the_customers_rules() {
        use crate::quality::{LineQuality, SideFigures};
        let dir = crate::testing::test_dir("offers");
        let mut store = Store::open(dir.to_str().unwrap()).unwrap();
        let c = |id: &str| Customer { plan: "basic".into(), monthly_value: 50.0, ..crate::testing::customer(id) };
        let customers = [
            Customer { partner_offers: true, ..c("keen") },
            c("no-partner"),
            Customer { dependent: true, partner_offers: true, ..c("child") },
            Customer { contact_opt_out: true, partner_offers: true, ..c("quiet") },
            Customer { monthly_value: 5.0, partner_offers: true, ..c("cheap") },
            Customer { plan: "top".into(), ..c("top-plan") },
        ];
        store.upsert_customers(&customers, 0).unwrap();
        let minute = 60_000;
        // Every line bloats on both sides in windows 1 to 3.
        let rows: Vec<LineQuality> = customers
            .iter()
            .flat_map(|c| {
                (1..=3).map(|w| LineQuality {
                    customer_id: c.customer_id.clone(),
                    window_start: w * minute,
                    home: SideFigures { bloated: true, ..Default::default() },
                    network: SideFigures { bloated: true, ..Default::default() },
                    ..Default::default()
                })
            })
            .collect();
        store.save_line_quality(&rows).unwrap();
        let mut config = crate::config::CollectorConfig::default();
        config.actions.holdout_share = 0.0;
        config.offers = crate::config::OffersConfig {
            enabled: true,
            min_monthly_value: 10.0,
            plan_upgrades: [("basic".to_string(), "fast".to_string())].into(),
            extender: "MeshCo X1".into(),
            ..Default::default()
        };
        let now = 10 * minute;
        let offered = |store: &mut Store, id: &str, side: &str, window: i64| {
            let c = customers.iter().find(|c| c.customer_id == id).unwrap();
            offer(store, &config, c, side, window, now).unwrap()
        };
        // Two bloated windows are not yet three.
        assert!(offered(&mut store, "keen", "home", 2 * minute).is_empty());
        let home = offered(&mut store, "keen", "home", 3 * minute);
        assert_eq!((home[0].action.as_str(), home[0].rule.as_deref()), ("offer", Some("offer:wifi_extender")));
        assert!(home[0].reason.contains("MeshCo X1") && home[0].reason.contains("3 windows"), "{}", home[0].reason);
        assert_eq!(home[0].channels, ["email", "app"]);
        assert!(offered(&mut store, "keen", "home", 3 * minute).is_empty(), "once in every_days");
        let access = offered(&mut store, "keen", "access", 3 * minute);
        assert!(access[0].reason.contains("from plan basic to fast"), "{}", access[0].reason);
        // Refusals name their reason; a partner's product needs consent, the operator's does not.
        let why = |a: Vec<Action>| (a[0].action.clone(), a[0].intended.clone(), a[0].reason.clone());
        let (action, intended, reason) = why(offered(&mut store, "no-partner", "home", 3 * minute));
        assert_eq!((action.as_str(), intended.as_str()), ("none", "offer"));
        assert!(reason.contains("no partner offers"), "{reason}");
        assert_eq!(offered(&mut store, "no-partner", "access", 3 * minute)[0].action, "offer");
        for side in ["home", "access"] {
            let (action, _, reason) = why(offered(&mut store, "child", side, 3 * minute));
            assert_eq!(action, "none");
            assert!(reason.contains("dependent line"), "{reason}");
            let (action, _, reason) = why(offered(&mut store, "quiet", side, 3 * minute));
            assert_eq!(action, "none");
            assert!(reason.contains("opted out"), "{reason}");
        }
        // Not worth the value rule, or no upgrade for the plan: nothing at all.
        assert!(offered(&mut store, "cheap", "home", 3 * minute).is_empty());
        assert!(offered(&mut store, "top-plan", "access", 3 * minute).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
