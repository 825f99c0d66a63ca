//! The pages that close the loop: what came of the actions (recovery and outcomes), which
//! actions work (against the hold-out), and what went to the operator's systems.

use crate::console::html::{escape, ms, page, pct, span, when, words};
use crate::correlate::is_ratio;
use crate::http::auth::User;
use crate::http::state::{ApiError, Shared, with_store};
use crate::model::Action;
use axum::extract::{Extension, State};
use axum::response::Html;
use std::fmt::Write;

/// What came of a customer's actions: each measured recovery, and what the operator's systems
/// reported afterwards.
pub(crate) fn results_rows(
    store: &mut crate::store::Store,
    customer_id: &str,
    actions: &[Action],
) -> Result<String, ApiError> {
    let mut rows = String::new();
    for a in actions {
        let Some(r) = store.action_result(a.id)? else { continue };
        let value = |v: Option<f64>| match v {
            Some(v) if is_ratio(&r.metric) => pct(v * 100.0),
            Some(v) => ms(v / 1000.0),
            None => "–".into(),
        };
        let outcome = match (r.recovered, r.recovery_ms) {
            (Some(true), Some(t)) => format!("recovered after {}", span(t)),
            (Some(false), _) => "not recovered".into(),
            _ => "not judged (no limit or no data after)".into(),
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td></tr>",
            escape(&words(&a.action)),
            escape(&words(&a.intended)),
            escape(&r.metric),
            value(r.before_value),
            value(r.after_value),
        );
    }
    let mut out = String::new();
    if !rows.is_empty() {
        let _ = write!(
            out,
            "<h2>Results</h2><table id=\"results\"><thead><tr><th>action</th><th>intended</th><th>metric</th>\
             <th>before</th><th>after</th><th>recovery</th></tr></thead><tbody>{rows}</tbody></table>"
        );
    }
    let outcomes = store.outcomes(Some(customer_id), 50)?;
    if !outcomes.is_empty() {
        let mut rows = String::new();
        for o in &outcomes {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(o.at_ms),
                escape(&words(&o.kind)),
                escape(&o.channel),
                o.score.map_or(String::new(), |s| format!("{s:.0}")),
                escape(&o.reason)
            );
        }
        let _ = write!(
            out,
            "<h2>Outcomes</h2><table id=\"outcomes\"><thead><tr><th>when</th><th>what</th><th>channel</th><th>score</th>\
             <th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
        );
    }
    Ok(out)
}

/// Webhook messages: what went out, what waits and why, what failed.
pub(crate) async fn deliveries_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, st| {
        let now = crate::clock::now_ms();
        let list = store.deliveries(&Default::default(), 200)?;
        let counts = store.delivery_counts()?;
        let mut rows = String::new();
        for d in &list {
            let next = match d.state.as_str() {
                "pending" if d.next_attempt_ms > now => {
                    format!("retry in {} s", (d.next_attempt_ms - now + 999) / 1000)
                }
                "pending" => "due".to_string(),
                _ => d.sent_ms.map_or(String::new(), |t| format!("{} ago", span(now - t))),
            };
            let _ = write!(
                rows,
                "<tr class=\"{state}\"><td class=\"num\">{id}</td><td>{webhook}</td><td>{event}</td><td>{subject}</td>\
                 <td><span class=\"status\">{state}</span></td><td class=\"num\">{attempts}</td><td>{status}</td>\
                 <td>{next}</td><td>{reason}</td><td>{created}</td></tr>",
                id = d.id,
                webhook = escape(&d.webhook),
                event = words(&d.event),
                subject = subject_link(&d.subject),
                state = escape(&d.state),
                attempts = d.attempts,
                status = d.last_status.map_or(String::new(), |s| s.to_string()),
                reason = escape(&d.reason),
                created = when(d.created_ms),
            );
        }
        if list.is_empty() {
            let why = if st.config.webhooks.is_empty() { "No webhook is configured." } else { "Nothing sent yet." };
            let _ = write!(rows, "<tr class=\"empty\"><td colspan=\"10\">{why}</td></tr>");
        }
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let body = format!(
            "<h1>Deliveries <span class=\"muted\">{}</span></h1><table id=\"deliveries\"><thead><tr><th>#</th>\
             <th>webhook</th><th>event</th><th>about</th><th>state</th><th>attempts</th><th>last status</th>\
             <th>next</th><th>reason</th><th>queued</th></tr></thead><tbody>{rows}</tbody></table>",
            escape(&summary.join(" · "))
        );
        Ok(page("Deliveries", &user, &body))
    })
    .await
}

/// `incident:12` links to the incident; an action's subject stays text.
fn subject_link(subject: &str) -> String {
    match subject.strip_prefix("incident:") {
        Some(id) => format!("<a href=\"/incidents/{0}\">incident {0}</a>", escape(id)),
        None => escape(&words(subject)).replace(':', " "),
    }
}

/// Which actions work: each action type and segment against the random hold-out.
pub(crate) async fn effectiveness_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, st| {
        let until = crate::clock::now_ms() + 1;
        let effects = crate::outcomes::effectiveness(store, &st.config, until - 30 * 86_400_000, until)?;
        let rate = |i: Option<crate::outcomes::Interval>| {
            i.map_or("–".into(), |i| format!("{} <span class=\"muted\">({}–{})</span>", pct(i.value * 100.0), pct(i.low * 100.0), pct(i.high * 100.0)))
        };
        let diff = |i: Option<crate::outcomes::Interval>| {
            i.map_or("–".into(), |i| format!("{:+.0} pts <span class=\"muted\">({:+.0} to {:+.0})</span>", i.value * 100.0, i.low * 100.0, i.high * 100.0))
        };
        let time = |i: Option<crate::outcomes::Interval>| {
            i.map_or("–".into(), |i| format!("{} <span class=\"muted\">({}–{})</span>", span(i.value as i64), span(i.low as i64), span(i.high as i64)))
        };
        let arm = |a: &crate::outcomes::Arm| {
            format!(
                "<td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
                a.actions,
                rate(a.recovery_rate),
                time(a.time_to_recovery_ms),
                rate(a.contact_rate)
            )
        };
        let mut rows = String::new();
        for e in &effects {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td>{}{}<td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                words(&e.action),
                escape(&e.segment),
                arm(&e.treated),
                arm(&e.holdout),
                diff(e.uplift.recovery_rate),
                diff(e.uplift.contact_rate),
                e.refused.actions,
            );
        }
        if effects.is_empty() {
            rows.push_str("<tr class=\"empty\"><td colspan=\"13\">No action measured in the last 30 days.</td></tr>");
        }
        let body = format!(
            "<h1>Effectiveness <span class=\"muted\">last 30 days, hold-out {}</span></h1>\
             <p class=\"muted\">Recovery: the incident's metric back within the plan in the {} min after the \
             action. Contacts: customers who called or wrote within {} days. 95% intervals (Wilson; bootstrap for \
             times; Newcombe for differences). Refused: no action because of the customer's own rules, not a control.</p>\
             <table id=\"effectiveness\"><thead><tr><th rowspan=\"2\">action</th><th rowspan=\"2\">segment</th>\
             <th colspan=\"4\">with the action</th><th colspan=\"4\">hold-out</th><th colspan=\"2\">uplift</th>\
             <th rowspan=\"2\">refused</th></tr><tr><th>n</th><th>recovered</th><th>time to recover</th><th>contacted</th>\
             <th>n</th><th>recovered</th><th>time to recover</th><th>contacted</th><th>recovery</th><th>contacts</th></tr>\
             </thead><tbody>{rows}</tbody></table>",
            pct(st.config.actions.holdout_share * 100.0),
            st.config.outcomes.after_minutes,
            st.config.outcomes.contact_days,
        );
        Ok(page("Effectiveness", &user, &body))
    })
    .await
}
