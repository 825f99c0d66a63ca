//! The NOC console: server-rendered pages over the same store as the API. Open incidents update
//! live (server-sent events say when, the page fetches the new rows), plots are SVG drawn here,
//! and the assets are compiled in, so the console works without the internet. Acknowledging
//! goes through the API, which only operators may call.

use crate::console::html::when;
use crate::console::live::{events, incident_rows_fragment};
use crate::console::pages::{agents_page, customer_page, history_page, incident_page, incidents_page};

pub mod html;
mod live;
mod pages;
mod plots;
mod results;

pub use live::watch_incidents;

use crate::http::state::Shared;
use axum::http::header;
use axum::routing::get;
use axum::{Router, middleware};

pub fn router(state: Shared) -> Router<Shared> {
    Router::new()
        .route("/", get(incidents_page))
        .route("/history", get(history_page))
        .route("/incidents/{id}", get(incident_page))
        .route("/customers/{id}", get(customer_page))
        .route("/agents", get(agents_page))
        .route("/deliveries", get(results::deliveries_page))
        .route("/effectiveness", get(results::effectiveness_page))
        .route("/console/incidents", get(incident_rows_fragment))
        .route("/console/events", get(events))
        .route("/static/console.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], CSS) }))
        .route("/static/console.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], JS) }))
        .layer(middleware::from_fn_with_state(state.logins.clone(), crate::http::auth::require))
}

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

#[cfg(test)]
mod tests {
    use super::html::{span, when};
    use crate::figures::downsample;
    use edgeprobe_wire::WireHistogram;
    use std::collections::BTreeMap;

    #[test]
    fn a_day_of_minutes_becomes_288_exact_points() {
        use edgeprobe_wire::histogram::{new_histogram, record};
        let mut windows = BTreeMap::new();
        for i in 0..1440i64 {
            let mut h = new_histogram();
            record(&mut h, 1_000 * (i as u64 % 5 + 1));
            let mut w = crate::figures::Figure::default();
            w.add(&WireHistogram::from_histogram(&h));
            windows.insert(i * 60_000, w);
        }
        assert_eq!(windows[&0].quantile(0.9), Some(1_000), "one histogram answers from its summary");
        let points = downsample(windows);
        assert_eq!(points.len(), 288);
        let first = &points[&0];
        assert_eq!(first.hist.as_ref().map(|h| h.len()), Some(5), "five minutes merged");
        assert!(first.hist.as_ref().unwrap().equivalent(first.quantile(0.9).unwrap(), 5_000));
        assert!(points.keys().zip(points.keys().skip(1)).all(|(a, b)| b - a == 300_000));
    }

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_795_468_884_000), "2026-11-23 21:21 UTC");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(
            (span(59_000), span(3_900_000), span(90_000_000)),
            ("0 min".into(), "1 h 05 min".into(), "1 d 1 h".into())
        );
    }
}
