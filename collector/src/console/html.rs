//! HTML pieces every page uses: escaping, the page frame, times, money and figures in words.

use crate::http::auth::User;
use crate::model::Incident;
use axum::response::Html;

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn page(title: &str, user: &User, body: &str) -> Html<String> {
    let role = if user.is_operator() { "operator" } else { "read" };
    let who =
        if user.authenticated { format!("{} ({role})", escape(&user.name)) } else { "no login configured".into() };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>{} · edgeprobe NOC</title><link rel=\"stylesheet\" \
         href=\"/static/console.css\"><script defer src=\"/static/console.js\"></script></head>\
         <body data-role=\"{role}\"><header><nav><a href=\"/\">Incidents</a><a href=\"/history\">History</a>\
         <a href=\"/agents\">Agents</a><a href=\"/deliveries\">Deliveries</a><a href=\"/effectiveness\">Effectiveness</a></nav><span class=\"user\">{who}</span></header>\
         <p id=\"message\" role=\"status\"></p><main>{body}</main></body></html>",
        escape(title)
    ))
}

/// "3 min", "2 h 05 min", "4 d 3 h".
pub(crate) fn span(ms: i64) -> String {
    let min = ms.max(0) / 60_000;
    match min {
        0..60 => format!("{min} min"),
        60..1440 => format!("{} h {:02} min", min / 60, min % 60),
        _ => format!("{} d {} h", min / 1440, min % 1440 / 60),
    }
}

/// A Unix ms time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::clock::civil(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", day / 3600, day % 3600 / 60)
}

/// An incident's scope as a NOC engineer reads it: `access node OLT-1`, `customer C-1007`.
pub(crate) fn scope(i: &Incident) -> String {
    let label = |k: &str| match k {
        "customer_id" => "customer".to_string(),
        other => words(other),
    };
    i.scope.iter().map(|(k, v)| format!("{} {v}", label(k))).collect::<Vec<_>>().join(", ")
}

/// An identifier in words: `home_network` is `home network`.
pub(crate) fn words(id: &str) -> String {
    id.replace('_', " ")
}

/// A monthly amount, in the configured currency: the customer file's `monthly_value`.
pub(crate) fn money(value: f64, currency: &str) -> String {
    match currency {
        "" => format!("{value:.2}"),
        c => format!("{} {value:.2}", escape(c)),
    }
}

pub(crate) fn ms(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0} ms") } else { format!("{v:.1} ms") }
}

pub(crate) fn pct(v: f64) -> String {
    format!("{v:.0}%")
}
