//! The console's pages: open incidents, history, one incident, one customer, agents.

use crate::console::html::{escape, money, ms, page, pct, scope, span, when, words};
use crate::console::plots::{P50_90_99, chart, per_window, percentiles, ratio};
use crate::correlate::{JOURNEY_FAILURES, JOURNEY_LATENCY, is_ratio, journey_of};
use crate::figures::Figure;
use crate::http::auth::User;
use crate::http::state::{ApiError, Shared, with_store};
use crate::model::{Action, Incident};
use axum::extract::{Extension, Path, Query, State};
use axum::response::Html;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

pub(crate) const HOUR_MS: i64 = 3_600_000;

pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// Open incidents first by severity, then by value at risk.
pub(crate) fn ranked(mut list: Vec<Incident>) -> Vec<Incident> {
    crate::http::api::rank(&mut list);
    list
}

pub(crate) fn ack_cell(i: &Incident, user: &User) -> String {
    match (&i.acked_by, user.is_operator()) {
        (Some(by), _) => format!("<span class=\"acked\">acked by {}</span>", escape(by)),
        (None, true) => format!("<button type=\"button\" data-ack=\"{}\">Acknowledge</button>", i.id),
        (None, false) => "<span class=\"muted\">not acked</span>".into(),
    }
}

/// The rows of the open-incident table; also what the live view fetches.
/// A table row for an incident: severity, kind, scope (linked), cause and customers, then
/// `rest`, cells the table adds.
pub(crate) fn incident_row(i: &Incident, rest: &str) -> String {
    format!(
        "<tr data-id=\"{id}\" class=\"sev-{sev}\"><td><span class=\"sev\">{sev}</span></td><td>{kind}</td>\
         <td><a href=\"/incidents/{id}\">{scope}</a></td><td class=\"cause\">{cause}</td>\
         <td class=\"num\">{n}</td>{rest}</tr>",
        id = i.id,
        sev = escape(&i.severity),
        kind = words(i.kind.as_str()),
        scope = escape(&scope(i)),
        cause = escape(&i.probable_cause),
        n = i.affected_customers,
    )
}

pub(crate) fn incident_rows(list: &[Incident], user: &User, now: i64, currency: &str) -> String {
    let mut rows = String::new();
    for i in list {
        let rest = format!(
            "<td class=\"num\">{}</td><td>{}</td><td>{}</td>",
            money(i.value_at_risk, currency),
            i.opened_at.map_or("-".into(), |t| span(now - t)),
            ack_cell(i, user)
        );
        rows.push_str(&incident_row(i, &rest));
    }
    if list.is_empty() {
        rows.push_str("<tr class=\"empty\"><td colspan=\"8\">No open incidents.</td></tr>");
    }
    rows
}

pub(crate) async fn incidents_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, st| {
        let list = ranked(store.incidents("open", 10_000)?);
        let rows = incident_rows(&list, &user, crate::clock::now_ms(), &st.config.http.currency);
        let body = format!(
            "<h1>Open incidents <span id=\"live\" class=\"muted\">live</span></h1><table id=\"incidents\"><thead><tr>\
             <th>severity</th><th>kind</th><th>scope</th><th>probable cause</th><th>customers</th>\
             <th>value at risk a month</th><th>open for</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        );
        Ok(page("Open incidents", &user, &body))
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    kind: Option<String>,
    q: Option<String>,
    days: Option<i64>,
}

pub(crate) async fn history_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Query(q): Query<HistoryQuery>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, _| {
        let now = crate::clock::now_ms();
        let days = q.days.unwrap_or(7).clamp(1, 366);
        let kind = q.kind.clone().filter(|k| !k.is_empty());
        let text = q.q.clone().unwrap_or_default().to_lowercase();
        let list: Vec<Incident> = store
            .incidents("resolved", 10_000)?
            .into_iter()
            .filter(|i| i.resolved_at.is_some_and(|r| r >= now - days * DAY_MS))
            .filter(|i| kind.as_deref().is_none_or(|k| i.kind.as_str() == k))
            .filter(|i| {
                text.is_empty()
                    || scope(i).to_lowercase().contains(&text)
                    || i.probable_cause.to_lowercase().contains(&text)
            })
            .collect();
        let mut options = String::from("<option value=\"\">any kind</option>");
        for k in
            ["access_node", "region", "service", "resolver", "home_network", "customer", "agents_offline", "bufferbloat"]
        {
            let selected = if kind.as_deref() == Some(k) { " selected" } else { "" };
            let _ = write!(options, "<option{selected}>{k}</option>");
        }
        let mut rows = String::new();
        for i in &list {
            let lasted = match (i.opened_at, i.resolved_at) {
                (Some(o), Some(r)) => span(r - o),
                _ => "-".into(),
            };
            let rest = format!(
                "<td>{}</td><td>{lasted}</td><td>{}</td>",
                i.opened_at.map_or("-".into(), when),
                i.acked_by.as_deref().map_or(String::new(), escape)
            );
            rows.push_str(&incident_row(i, &rest));
        }
        if list.is_empty() {
            rows.push_str("<tr class=\"empty\"><td colspan=\"8\">No resolved incidents match.</td></tr>");
        }
        let body = format!(
            "<h1>Resolved incidents</h1><form class=\"filter\" method=\"get\"><select name=\"kind\">{options}</select>\
             <input name=\"q\" placeholder=\"scope or cause\" value=\"{qv}\"><label>last <input name=\"days\" \
             type=\"number\" min=\"1\" max=\"366\" value=\"{days}\"> days</label><button>Filter</button></form>\
             <table id=\"history\"><thead><tr><th>severity</th><th>kind</th><th>scope</th><th>probable cause</th>\
             <th>customers</th><th>opened</th><th>lasted</th><th>acked by</th></tr></thead><tbody>{rows}</tbody></table>",
            qv = escape(q.q.as_deref().unwrap_or("")),
        );
        Ok(page("Incident history", &user, &body))
    })
    .await
}

/// Per side, the loaded round trips' p90 against the idle baseline; and the QoO scores.
fn quality_charts(quality: &[crate::quality::LineQuality], range: (i64, i64)) -> String {
    let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
    let series = |label: &str, f: &dyn Fn(&crate::quality::LineQuality) -> Option<f64>| super::plots::Series {
        label: label.into(),
        points: quality.iter().filter_map(|q| f(q).map(|v| (q.window_start, v))).collect(),
    };
    let mut out = String::new();
    for (side, title) in
        [("home", "Round trips under load, home side"), ("network", "Round trips under load, network side")]
    {
        let pick = |q: &crate::quality::LineQuality| if side == "home" { q.home.clone() } else { q.network.clone() };
        let lines = [
            series("loaded p90", &|q| ms(pick(q).loaded_p90_us)),
            series("idle baseline", &|q| ms(pick(q).baseline_us)),
        ];
        out.push_str(&chart(&format!("rtt_{side}_loaded"), title, "ms", &lines, range, fmt_ms));
    }
    let mut names: Vec<&str> = quality.iter().flat_map(|q| q.qoo.keys().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let scores: Vec<super::plots::Series> = names.iter().map(|n| series(n, &|q| q.qoo.get(*n).copied())).collect();
    out.push_str(&chart("qoo", "Quality of Outcome (draft-ietf-ippm-qoo-10)", "score", &scores, range, fmt_score));
    out
}

fn fmt_ms(v: f64) -> String {
    ms(v)
}

fn fmt_score(v: f64) -> String {
    format!("{v:.0}")
}

pub(crate) fn metric_title(metric: &str) -> String {
    match metric {
        "connect_network" => "TCP connect, network side".into(),
        "connect_home" => "TCP connect, home side".into(),
        "dns" => "DNS latency".into(),
        "tls_handshake" => "TLS handshake".into(),
        "http_ttfb" => "HTTP time to first byte".into(),
        "quic_hello" => "QUIC handshake, network side".into(),
        "quic_home" => "QUIC handshake, home side".into(),
        "quic_handshake" => "QUIC handshake".into(),
        "dns_failures" => "DNS failures".into(),
        "connect_failures" => "Failed connects".into(),
        m => match journey_of(m) {
            Some(j) if is_ratio(m) => format!("Journey {j}: failed or timed out"),
            Some(j) => format!("Journey {j}: time"),
            None => m.to_string(),
        },
    }
}

pub(crate) fn evidence_table(evidence: &serde_json::Value) -> String {
    let mut rows = String::new();
    if let Some(obj) = evidence.as_object() {
        for (k, v) in obj {
            // Times (Unix ms) as dates: `window start 1796601390000` says nothing to a reader.
            let timestamp = v.as_i64().filter(|t| (1_000_000_000_000..10_000_000_000_000).contains(t));
            let v = match (v, timestamp) {
                (_, Some(t)) if k.contains("window") || k.ends_with("_ms") || k.ends_with("_at") => when(t),
                (serde_json::Value::String(s), _) => s.clone(),
                (other, _) => other.to_string(),
            };
            let _ = write!(rows, "<tr><th>{}</th><td>{}</td></tr>", escape(&k.replace('_', " ")), escape(&v));
        }
    }
    format!("<table class=\"evidence\">{rows}</table>")
}

pub(crate) fn action_rows(actions: &[Action], with_customer: bool) -> String {
    let mut rows = String::new();
    for a in actions {
        let who = if with_customer {
            format!("<td><a href=\"/customers/{0}\">{0}</a></td>", escape(&a.customer_id))
        } else {
            let source = match (&a.incident_id, &a.rule) {
                (Some(id), _) => format!("<a href=\"/incidents/{id}\">incident {id}</a>"),
                (None, Some(rule)) => escape(rule),
                _ => String::new(),
            };
            format!("<td>{source}</td>")
        };
        let _ = write!(
            rows,
            "<tr>{who}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&words(&a.action)),
            if a.contact { "yes" } else { "no" },
            escape(&a.reason),
            when(a.created_ms),
            a.ended_ms.map_or("current".into(), when)
        );
    }
    let first = if with_customer { "customer" } else { "why" };
    format!(
        "<table class=\"actions\"><thead><tr><th>{first}</th><th>action</th><th>contact</th><th>reason</th><th>suggested</th>\
         <th>ended</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

pub(crate) async fn incident_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, st| {
        let currency = st.config.http.currency.as_str();
        let i = store.incident(id)?.ok_or_else(|| ApiError::NoIncident(id))?;
        let customers = store.customers_by_id(&i.customers)?;
        let actions = store.incident_actions(id)?;
        let now = crate::clock::now_ms();
        let until = i.resolved_at.unwrap_or(now).min(i.first_window + DAY_MS);
        let since = (i.first_window - HOUR_MS).max(until - DAY_MS);

        // The degraded metric for the affected customers against a sample of the others: the
        // rest of the region for a node, the rest of the base otherwise.
        let mut plot = String::new();
        if !i.metric.is_empty() && i.metric != "agent_state" {
            let affected: Vec<String> = customers.iter().map(|c| c.subscriber_id.clone()).collect();
            let region = match i.kind {
                crate::model::IncidentKind::AccessNode => customers.first().map(|c| c.region.clone()),
                _ => None,
            };
            let others = store.other_customers(&i.customers, region.as_deref(), 500)?;
            let rest: Vec<String> = others.iter().map(|c| c.subscriber_id.clone()).collect();
            let mine = per_window(&store.lines_of(&affected, since, until + 1)?, &i.metric);
            let theirs = per_window(&store.lines_of(&rest, since, until + 1)?, &i.metric);
            let title = format!("{} — affected customers against {} others", metric_title(&i.metric), rest.len());
            // The plot spans the data: from the first window either group has to the last.
            let starts = mine.keys().chain(theirs.keys());
            let (since, until) = match (starts.clone().min(), starts.max()) {
                (Some(a), Some(b)) if b > a => (*a, *b),
                _ => (since, until),
            };
            plot = if is_ratio(&i.metric) {
                let s = [ratio(&mine, "affected", false), ratio(&theirs, "others", false)];
                chart(&i.metric, &title, "%", &s, (since, until), pct)
            } else {
                let mut s = percentiles(&mine, "affected ", &P50_90_99);
                s.extend(percentiles(&theirs, "others ", &[("p90", 0.9)]));
                chart(&i.metric, &title, "ms", &s, (since, until), ms)
            };
        }
        let mut rows = String::new();
        for c in &customers {
            let _ = write!(
                rows,
                "<tr><td><a href=\"/customers/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&c.segment),
                escape(&c.plan),
                escape(&c.region),
                escape(&c.access_node),
                money(c.monthly_value, currency),
                if c.contact_opt_out { "opted out" } else { "" },
                id = escape(&c.customer_id),
            );
        }
        let state_line = match (i.opened_at, i.resolved_at) {
            (Some(o), None) => format!("open for {}", span(now - o)),
            (Some(o), Some(r)) => format!("resolved {} after {}", when(r), span(r - o)),
            _ => i.state.clone(),
        };
        let body = format!(
            "<h1>Incident {id}: {heading}</h1><p class=\"meta\"><span class=\"sev sev-{sev}\">{sev}</span> \
             {state_line} · {n} customers · {value} a month at risk · <span id=\"ack\">{ack}</span></p>\
             <p class=\"cause\">{cause}</p><h2>Evidence: {metric}</h2>{evidence}{plot}\
             <h2>Affected customers</h2><table id=\"customers\"><thead><tr><th>customer</th><th>segment</th>\
             <th>plan</th><th>region</th><th>access node</th><th>monthly value</th><th>contact</th></tr></thead>\
             <tbody>{rows}</tbody></table><h2>Suggested actions</h2>{actions}",
            id = i.id,
            heading = {
                // `access node OLT-1` says its kind; `customer C-1` needs it said.
                let (kind, scope) = (words(i.kind.as_str()), scope(&i));
                escape(&if scope.starts_with(&kind) { scope } else { format!("{kind}, {scope}") })
            },
            sev = escape(&i.severity),
            n = i.affected_customers,
            value = money(i.value_at_risk, currency),
            ack = ack_cell(&i, &user),
            cause = escape(&i.probable_cause),
            metric = escape(&metric_title(&i.metric)),
            evidence = evidence_table(&i.evidence),
            actions = action_rows(&actions, true),
        );
        Ok(page(&format!("Incident {id}"), &user, &body))
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct RangeQuery {
    range: Option<String>,
}

/// The ranges a customer page offers; without one chosen, the range follows the data.
pub(crate) const RANGES: [(&str, &str, i64); 4] = [
    ("1h", "1 hour", HOUR_MS),
    ("6h", "6 hours", 6 * HOUR_MS),
    ("24h", "24 hours", DAY_MS),
    ("7d", "7 days", 7 * DAY_MS),
];

pub(crate) async fn customer_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, st| {
        let currency = st.config.http.currency.as_str();
        let c = store.customer(&id)?.ok_or_else(|| ApiError::NoCustomer(id.to_string()))?;
        let now = crate::clock::now_ms();
        let until = now;
        let chosen = RANGES.iter().find(|r| q.range.as_deref() == Some(r.0));
        let mut lines = store.subscriber_lines(&c.subscriber_id, now - chosen.map_or(7 * DAY_MS, |r| r.2), until + 1)?;
        // Without a choice, from a little before the first window measured in the last 7 days
        // (two minutes at least), so a few minutes of data are not one line at a day's edge.
        let since = match chosen {
            Some(r) => now - r.2,
            None => lines.iter().map(|(w, _)| *w).min().map_or(now - DAY_MS, |first| {
                let span = (now - first).max(2 * 60_000);
                now - span - span / 10
            }),
        };
        lines.retain(|(w, _)| *w >= since);
        let range_label = chosen.map_or_else(|| format!("Since {}", when(since)), |r| format!("Last {}", r.1));
        let mut nav = String::from("<nav class=\"ranges\">range: ");
        let auto = if chosen.is_none() { " class=\"current\"" } else { "" };
        let _ = write!(nav, "<a href=\"?\"{auto}>the data</a>");
        for (key, label, _) in RANGES {
            let current = if chosen.is_some_and(|r| r.0 == key) { " class=\"current\"" } else { "" };
            let _ = write!(nav, " · <a href=\"?range={key}\"{current}>{label}</a>");
        }
        nav.push_str("</nav>");
        let (_, score) = crate::http::api::line_score(store, &st.config, &c)?;
        let score = score.map_or_else(
            || "<p class=\"score muted\">No recent measurements to score.</p>".to_string(),
            |s| format!("<p class=\"score\">Score now <b id=\"score\">{s:.0}</b>/100 (100: every metric's p90 within plan {})</p>", escape(&c.plan)),
        );
        let mut plots = String::new();
        // QUIC's only where the line used it.
        let quic = ["quic_hello", "quic_home", "quic_handshake"]
            .into_iter()
            .filter(|m| lines.iter().any(|(_, l)| l.metrics.get(m).is_some()));
        for metric in ["dns", "connect_network", "connect_home", "tls_handshake", "http_ttfb"].into_iter().chain(quic) {
            let s = percentiles(&per_window(&lines, metric), "", &P50_90_99);
            plots.push_str(&chart(metric, &metric_title(metric), "ms", &s, (since, until), ms));
        }
        // Working latency and Quality of Outcome, where the line had round trips.
        let quality = store.line_quality(&c.customer_id, since)?;
        if !quality.is_empty() {
            plots.push_str(&quality_charts(&quality, (since, until)));
        }
        let mut journeys: Vec<&str> =
            lines.iter().flat_map(|(_, l)| l.journeys.iter().map(|j| j.journey.as_str())).collect();
        journeys.sort_unstable();
        journeys.dedup();
        let mut journey_plots = String::new();
        for j in &journeys {
            let failures = format!("{JOURNEY_FAILURES}{j}");
            let success = [ratio(&per_window(&lines, &failures), "success", true)];
            let title = format!("Journey {j}: success");
            journey_plots.push_str(&chart(&failures, &title, "%", &success, (since, until), pct));
            let metric = format!("{JOURNEY_LATENCY}{j}");
            let latency = percentiles(&per_window(&lines, &metric), "", &P50_90_99);
            journey_plots.push_str(&chart(&metric, &metric_title(&metric), "ms", &latency, (since, until), ms));
        }
        if journeys.is_empty() {
            journey_plots.push_str("<p class=\"muted\">No journeys measured in this range.</p>");
        }

        // Top services over the range, by traffic.
        #[derive(Default)]
        struct Svc {
            bytes: u64,
            connects: u64,
            windows: u64,
            ttfb: Figure,
        }
        let mut services: BTreeMap<&str, Svc> = BTreeMap::new();
        for (_, l) in &lines {
            for s in &l.services {
                let e = services.entry(&s.service).or_default();
                e.bytes += s.counters.bytes_down + s.counters.bytes_up;
                e.connects += s.counters.connects;
                e.windows += 1;
                if let Some(h) = s.metrics.http_ttfb.as_ref().or(s.metrics.tls_handshake.as_ref()) {
                    e.ttfb.add(h);
                }
            }
        }
        let mut top: Vec<(&str, Svc)> = services.into_iter().collect();
        top.sort_by_key(|s| std::cmp::Reverse(s.1.bytes));
        let mut svc_rows = String::new();
        for (name, s) in top.iter().take(10) {
            let p90 = s.ttfb.quantile(0.9).map_or("-".into(), |v| ms(v as f64 / 1000.0));
            let _ = write!(
                svc_rows,
                "<tr><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{p90}</td></tr>",
                escape(name),
                s.bytes as f64 / 1e6,
                s.connects,
                s.windows
            );
        }
        let incidents: Vec<Incident> =
            store.incidents("all", 10_000)?.into_iter().filter(|i| i.customers.contains(&c.customer_id)).collect();
        let mut inc_rows = String::new();
        for i in &incidents {
            let _ = write!(
                inc_rows,
                "<tr><td><a href=\"/incidents/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"cause\">{}</td></tr>",
                words(i.kind.as_str()),
                escape(&scope(i)),
                escape(&i.state),
                escape(&i.probable_cause),
                id = i.id
            );
        }
        let actions = store.actions(Some(&c.customer_id), false, 100)?;
        let results = crate::console::results::results_rows(store, &c.customer_id, &actions)?;
        let body = format!(
            "<h1>Customer {id}</h1><p class=\"meta\">{segment} · plan {plan} · {region} / {node} · {value} a month{opt}</p>\
             {score}<h2>{range_label}</h2>{nav}<div class=\"charts\">{plots}</div><h2>Journeys</h2><div class=\"charts\">{journey_plots}</div>\
             <h2>Top services</h2><table id=\"services\"><thead><tr><th>service</th><th>MB</th><th>connects</th>\
             <th>windows</th><th>p90 TTFB (or TLS)</th></tr></thead><tbody>{svc_rows}</tbody></table>\
             <h2>Incidents</h2><table id=\"customer-incidents\"><thead><tr><th>id</th><th>kind</th><th>scope</th><th>state</th>\
             <th>probable cause</th></tr></thead><tbody>{inc_rows}</tbody></table><h2>Actions</h2>{actions}{results}",
            id = escape(&c.customer_id),
            segment = escape(&c.segment),
            plan = escape(&c.plan),
            region = escape(&c.region),
            node = escape(&c.access_node),
            value = money(c.monthly_value, currency),
            opt = if c.contact_opt_out { " · opted out of contact" } else { "" },
            actions = action_rows(&actions, false),
        );
        Ok(page(&format!("Customer {}", c.customer_id), &user, &body))
    })
    .await
}

pub(crate) async fn agents_page(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, _| {
        let now = crate::clock::now_ms();
        let mut rows = String::new();
        let agents = store.agents()?;
        for a in &agents {
            let status = match (a.online, a.stopped) {
                (true, _) => "online",
                (false, true) => "stopped",
                (false, false) => "offline",
            };
            let cap = &a.capture;
            let n = |k: &str| cap[k].as_u64().unwrap_or(0);
            let evictions: u64 = cap["evictions"].as_object().map_or(0, |o| o.values().filter_map(|v| v.as_u64()).sum());
            let spool = a.spool_waiting.map_or("-".into(), |d| d.to_string());
            let _ = write!(
                rows,
                "<tr class=\"{status}\"><td>{id}</td><td><span class=\"status\">{status}</span></td><td>{last}</td>\
                 <td>{version}</td><td>{config}</td><td class=\"num\">{packets}</td><td class=\"num\">{drops}</td>\
                 <td class=\"num\">{evictions}</td><td class=\"num\">{spool}</td><td>{nodes}</td></tr>",
                id = escape(&a.agent_id),
                last = a.last_report_ms.map_or("never".into(), |t| format!("{} ago", span(now - t))),
                version = escape(&a.version),
                config = if a.config_error.is_empty() {
                    escape(if a.config_version.is_empty() { "own file" } else { &a.config_version })
                } else {
                    format!("{} <span class=\"error\">{}</span>", escape(&a.config_version), escape(&a.config_error))
                },
                packets = n("packets"),
                drops = n("kernel_drops"),
                nodes = escape(&a.access_nodes.join(", ")),
            );
        }
        if agents.is_empty() {
            rows.push_str("<tr class=\"empty\"><td colspan=\"10\">No agent has reported yet.</td></tr>");
        }
        let online = agents.iter().filter(|a| a.online).count();
        let body = format!(
            "<h1>Agents <span class=\"muted\">{online} of {} online</span></h1><table id=\"agents\"><thead><tr>\
             <th>agent</th><th>status</th><th>last report</th><th>version</th><th>config</th><th>packets</th>\
             <th>kernel drops</th><th>evictions</th><th title=\"reports waiting at the agent for the broker, as last known\">waiting</th><th>access nodes</th></tr></thead><tbody>{rows}</tbody></table>",
            agents.len()
        );
        Ok(page("Agents", &user, &body))
    })
    .await
}
