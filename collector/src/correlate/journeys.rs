//! Journey figures per window and group, kept for the API and console.

use crate::customers::Customer;
use crate::store::{JourneyStats, Result, Store};
use edgeprobe_wire::SubscriberReport;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Computes a window's journey figures again, after a report for it arrived late.
pub fn refresh_journey_stats(store: &mut Store, window_start: i64) -> Result<()> {
    store.transaction(true, |store| {
        let reports = store.window_lines(window_start)?;
        let keys: Vec<String> = reports.iter().map(|r| r.subscriber.clone()).collect();
        let customers = store.customers_by_subscriber(&keys)?;
        store.delete_journey_stats(window_start)?;
        store.save_journey_stats(window_start, &journey_stats(&reports, &customers))
    })
}

/// A window's journey figures for every customer, segment, region and access node group.
/// Subscribers with no customer record count nowhere, as in correlation.
pub(crate) fn journey_stats(reports: &[SubscriberReport], customers: &HashMap<String, Customer>) -> Vec<JourneyStats> {
    let mut out: BTreeMap<(&str, &str, &str), (JourneyStats, BTreeSet<&str>)> = BTreeMap::new();
    for r in reports {
        let Some(c) = customers.get(&r.subscriber) else { continue };
        for j in &r.journeys {
            let groups =
                [("all", "all"), ("segment", &c.segment), ("region", &c.region), ("access_node", &c.access_node)];
            for (dimension, group) in groups {
                let (s, who) = out
                    .entry((dimension, group, &j.journey))
                    .or_insert_with(|| (JourneyStats::new(dimension, group, j), BTreeSet::new()));
                who.insert(&c.customer_id);
                s.add(j);
            }
        }
    }
    out.into_values()
        .map(|(mut s, who)| {
            s.customers = who.len() as u64;
            s
        })
        .collect()
}
