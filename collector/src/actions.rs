//! Next best actions: for each customer an open incident affects, what to do and why. The
//! choice follows the incident's kind and the customer's segment; a contact is never suggested
//! to a customer who opted out, or beyond the contact cap; and every affected customer gets a
//! marketing hold until the incident resolves.

use crate::config::ActionsConfig;
use crate::customers::Customer;
use crate::model::{Action, Incident, IncidentKind};
use crate::store::{Result, Store};

/// The suggestion before the customer's contact preferences are applied.
fn proposal(incident: &Incident, customer: &Customer, config: &ActionsConfig) -> (&'static str, bool, String) {
    let scope = incident.scope.values().cloned().collect::<Vec<_>>().join(", ");
    let ticket_segment = config.ticket_segments.iter().any(|s| s.eq_ignore_ascii_case(&customer.segment));
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
            format!("{} customer affected by degraded service {scope}; a ticket tracks it with the provider", customer.segment),
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

/// Stores the actions an open incident calls for, for customers who have none for it yet.
/// Returns how many were added.
pub fn suggest(store: &mut Store, incident: &Incident, config: &ActionsConfig, now_ms: i64) -> Result<usize> {
    let customers = store.customers_by_id(&incident.customers)?;
    let mut added = 0;
    for customer in customers {
        if store.has_action(incident.id, &customer.customer_id)? {
            continue;
        }
        let (mut kind, mut contact, mut reason) = proposal(incident, &customer, config);
        if contact {
            let since = now_ms - (config.contact_window_hours as i64) * 3_600_000;
            let recent = store.contacts_since(&customer.customer_id, since)?;
            if customer.contact_opt_out {
                reason = format!("would suggest {kind}, but the customer opted out of contact ({reason})");
                (kind, contact) = ("none", false);
            } else if recent >= config.max_contacts as i64 {
                reason = format!(
                    "would suggest {kind}, but the customer was contacted {recent} times in the last {} h (cap {})",
                    config.contact_window_hours, config.max_contacts
                );
                (kind, contact) = ("none", false);
            }
        }
        let base = Action {
            id: 0,
            incident_id: incident.id,
            customer_id: customer.customer_id.clone(),
            action: kind.to_string(),
            contact,
            reason,
            created_ms: now_ms,
            ended_ms: None,
        };
        added += usize::from(store.insert_action(&base)?);
        let hold = Action {
            action: "hold_marketing".into(),
            contact: false,
            reason: format!(
                "open incident #{} ({}) affects this customer: hold marketing until it resolves",
                incident.id,
                incident.kind.as_str()
            ),
            ..base
        };
        added += usize::from(store.insert_action(&hold)?);
    }
    Ok(added)
}
