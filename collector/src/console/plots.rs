//! Line charts as SVG, drawn on the server: the console needs no script library and works
//! offline. Each series is a `<g class="series" data-label=...>` holding its polyline and one
//! `<circle>` per point (with a tooltip), so a test can count what was drawn. The series come
//! from stored lines, one metric per window, merged exactly and thinned to at most
//! [`MAX_POINTS`] points.

use crate::console::html::escape;
use crate::figures::{Figure, downsample};
use edgeprobe_wire::SubscriberReport;
use std::collections::BTreeMap;
use std::fmt::Write;

pub struct Series {
    pub label: String,
    /// Unix ms and value.
    pub points: Vec<(i64, f64)>,
}

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
/// Room above the plot for the unit, clear of the top tick.
const TOP: f64 = 24.0;
const BOTTOM: f64 = 28.0;

/// A time on an axis spanning `span_ms`, as precise as the span needs: seconds for a few
/// minutes (windows of 10 s would otherwise all read the same minute), the date past two days.
fn clock(ms: i64, span_ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let day = secs.rem_euclid(86_400);
    let (h, m, s) = (day / 3600, day % 3600 / 60, day % 60);
    if span_ms <= 1_800_000 {
        format!("{h:02}:{m:02}:{s:02}")
    } else if span_ms <= 172_800_000 {
        format!("{h:02}:{m:02}")
    } else {
        super::when(ms).get(5..16).unwrap_or_default().to_string()
    }
}

/// A chart of `series` over `[from, to]` (Unix ms); `unit` labels the y axis, and `format`
/// writes a value for ticks and tooltips. `metric` names the chart for tests and styles.
pub fn chart(
    metric: &str,
    title: &str,
    unit: &str,
    series: &[Series],
    (from, to): (i64, i64),
    format: impl Fn(f64) -> String,
) -> String {
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0_f64, f64::max);
    let top = if max > 0.0 { nice(max) } else { 1.0 };
    let span = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" \
         data-metric=\"{}\" aria-label=\"{}\">",
        escape(title),
        escape(metric),
        escape(title)
    );
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" \
             y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y(v) + 4.0,
            escape(&format(v)),
            y = y(v)
        );
    }
    for (t, anchor) in [(from, "start"), ((from + to) / 2, "middle"), (to, "end")] {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            H - 8.0,
            clock(t, to - from)
        );
    }
    let _ = write!(out, "<text class=\"unit\" x=\"4\" y=\"12\">{}</text>", escape(unit));
    for (i, s) in series.iter().enumerate() {
        let _ = write!(
            out,
            "<g class=\"series s{i}\" data-label=\"{}\" data-points=\"{}\">",
            escape(&s.label),
            s.points.len()
        );
        if s.points.len() > 1 {
            out.push_str("<polyline points=\"");
            for (t, v) in &s.points {
                let _ = write!(out, "{:.1},{:.1} ", x(*t), y(*v));
            }
            out.push_str("\"/>");
        }
        for (t, v) in &s.points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{} {} {}</title></circle>",
                x(*t),
                y(*v),
                escape(&s.label),
                clock(*t, to - from),
                escape(&format(*v))
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg><ul class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        let _ = write!(out, "<li class=\"s{i}\">{}</li>", escape(&s.label));
    }
    if series.iter().all(|s| s.points.is_empty()) {
        out.push_str("<li>no data in this range</li>");
    }
    out.push_str("</ul></figure>");
    out
}

/// The next round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

/// One metric of `lines`, per window, at most `MAX_POINTS` of them.
pub(crate) fn per_window(lines: &[(i64, SubscriberReport)], metric: &str) -> BTreeMap<i64, Figure> {
    downsample(crate::outcomes::windows_of(lines, metric))
}

/// Percentile series (ms) of a latency metric per window, labelled `prefix` + p50/p90/p99.
pub(crate) fn percentiles(windows: &BTreeMap<i64, Figure>, prefix: &str, quantiles: &[(&str, f64)]) -> Vec<Series> {
    quantiles
        .iter()
        .map(|(name, q)| Series {
            label: format!("{prefix}{name}"),
            points: windows.iter().filter_map(|(ws, w)| w.quantile(*q).map(|v| (*ws, v as f64 / 1000.0))).collect(),
        })
        .collect()
}

pub(crate) fn ratio(windows: &BTreeMap<i64, Figure>, label: &str, invert: bool) -> Series {
    let points = windows
        .iter()
        .filter(|(_, w)| w.total > 0)
        .map(|(ws, w)| {
            let r = w.bad as f64 / w.total as f64 * 100.0;
            (*ws, if invert { 100.0 - r } else { r })
        })
        .collect();
    Series { label: label.into(), points }
}

pub(crate) const P50_90_99: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_drawn_and_labels_are_escaped() {
        let s = vec![
            Series { label: "p90 <all>".into(), points: vec![(0, 1.0), (60_000, 3.0), (120_000, 2.0)] },
            Series { label: "rest".into(), points: vec![] },
        ];
        let svg = chart("dns", "DNS & co", "ms", &s, (0, 120_000), |v| format!("{v:.0}"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("data-label=\"p90 &lt;all&gt;\" data-points=\"3\""));
        assert!(svg.contains("data-points=\"0\""));
        assert!(svg.contains("DNS &amp; co"));
        assert_eq!((nice(3.0), nice(0.7), nice(120.0)), (5.0, 1.0, 200.0));
    }

    #[test]
    fn axis_times_are_as_precise_as_the_span_needs() {
        let t = 1_796_601_390_000; // 2026-12-06 23:56:30 UTC
        assert_eq!(clock(t, 5 * 60_000), "23:56:30");
        assert_eq!(clock(t, 24 * 3_600_000), "23:56");
        assert_eq!(clock(t, 7 * 24 * 3_600_000), "12-06 23:56");
        // Three ticks over ten-second windows say three different times.
        let s = vec![Series { label: "p90".into(), points: vec![(t, 1.0), (t + 10_000, 2.0), (t + 20_000, 1.0)] }];
        let svg = chart("dns", "DNS", "ms", &s, (t, t + 20_000), |v| format!("{v:.0}"));
        for tick in ["23:56:30", "23:56:40", "23:56:50"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "{tick} in {svg}");
        }
    }
}
