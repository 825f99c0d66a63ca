//! The scopes an incident can have, widest first. Each takes from `open` what it explains and
//! adds its candidates; what no group explains is left to the customer scope.

use super::evidence::{describe, figure, fmt_value, group_candidate, unit};
use super::judge::judge;
use super::{
    Candidate, DNS_METRICS, Findings, HOME_SIDES, NETWORK_METRICS, NodeFindings, Window, is_network, is_ratio,
    journey_of,
};
use crate::customers::Customer;
use crate::model::{Incident, IncidentKind};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Home network: the home side of a TCP connect or a QUIC handshake is slow while its network
/// side is measured and fine. One incident a customer: TCP's when both are.
pub(super) fn home(w: &mut Window<'_>) {
    for (id, (customer, bad, judged)) in &w.verdicts {
        for (home, network) in HOME_SIDES {
            let Some(f) = bad.get(home) else { continue };
            if !judged.contains(network) || bad.contains_key(network) {
                continue;
            }
            let net = w.lines[&customer.subscriber_id].whole.latency.get(network).map_or(0.0, |l| l.p90);
            let what = if home == "connect_home" { "connect time" } else { "QUIC handshake time" };
            w.candidates.push(Candidate {
                kind: IncidentKind::HomeNetwork,
                scope: BTreeMap::from([("customer_id".to_string(), id.to_string())]),
                metric: home.into(),
                customers: BTreeSet::from([id.to_string()]),
                evidence: json!({"metric": home, "unit": "ms (p90)", "value": figure(home, f.value),
                    "threshold": figure(home, f.threshold), network: figure(network, net)}),
                cause: format!(
                    "Home-side {what} is {} at p90 against {} allowed, while the network side is {}: \
                     the delay is inside the home (Wi-Fi, a busy or distant device), not in the network.",
                    fmt_value(home, f.value),
                    fmt_value(home, f.threshold),
                    fmt_value(network, net)
                ),
            });
            break;
        }
    }
}

/// Resolver: DNS bad for customers on several access nodes while their connects are fine.
pub(super) fn resolver(w: &mut Window<'_>, resolvers: &BTreeMap<&str, BTreeMap<&str, super::Measured>>) {
    let c = &w.config.correlation;
    {
        let dns_measured: Vec<&str> = w
            .verdicts
            .iter()
            .filter(|(_, (_, _, judged))| DNS_METRICS.iter().any(|m| judged.contains(*m)))
            .map(|(id, _)| *id)
            .collect();
        let dns_bad: Vec<(&Customer, &Findings)> = w
            .verdicts
            .iter()
            .filter(|(_, (_, bad, judged))| {
                DNS_METRICS.iter().any(|m| bad.contains_key(*m))
                    && judged.contains("connect_network")
                    && !bad.contains_key("connect_network")
            })
            .map(|(_, (cust, bad, _))| (*cust, bad))
            .collect();
        let nodes: BTreeSet<&str> = dns_bad.iter().map(|(c, _)| c.access_node.as_str()).collect();
        if dns_bad.len() >= c.group_min_customers
            && nodes.len() >= 2
            && dns_bad.len() as f64 >= c.group_fraction * dns_measured.len() as f64
        {
            // Where agents say which resolvers a line asked, each failing one is named: judged on
            // its own answers, it is bad for enough of the customers who asked it.
            let mut asked: BTreeMap<&str, usize> = BTreeMap::new();
            let mut failing: BTreeMap<&str, Vec<(&Customer, Findings)>> = BTreeMap::new();
            // dns_bad already holds only customers whose connections were judged fine.
            let dns_bad_ids: BTreeSet<&str> = dns_bad.iter().map(|(c, _)| c.customer_id.as_str()).collect();
            for (cust, _, _) in w.verdicts.values() {
                let Some(theirs) = resolvers.get(cust.subscriber_id.as_str()) else { continue };
                let plan = w.config.plan(&cust.plan);
                let on_dns_bad = dns_bad_ids.contains(cust.customer_id.as_str());
                for (ip, m) in theirs {
                    let (bad, judged) = judge(m, plan, None, &cust.customer_id, c);
                    if DNS_METRICS.iter().any(|d| judged.contains(*d)) {
                        *asked.entry(ip).or_default() += 1;
                    }
                    if on_dns_bad && DNS_METRICS.iter().any(|d| bad.contains_key(*d)) {
                        failing.entry(ip).or_default().push((cust, bad));
                    }
                }
            }
            failing.retain(|ip, bad| {
                let nodes: BTreeSet<&str> = bad.iter().map(|(c, _)| c.access_node.as_str()).collect();
                bad.len() >= c.group_min_customers
                    && nodes.len() >= 2
                    && bad.len() as f64 >= c.group_fraction * asked.get(ip).copied().unwrap_or(0) as f64
            });
            if failing.is_empty() {
                for (cust, _) in &dns_bad {
                    if let Some(f) = w.open.get_mut(cust.customer_id.as_str()) {
                        f.retain(|m, _| !DNS_METRICS.contains(&m.as_str()));
                    }
                }
                let scope = ("resolver", "subscriber resolvers");
                let (n, measured, nodes) = (dns_bad.len(), dns_measured.len(), nodes.len());
                w.candidates.push(group_candidate(IncidentKind::Resolver, scope, &dns_bad, measured, &DNS_METRICS, |m, v, t| {
                    format!(
                        "{m} is {v} (median) against {t} allowed for {n} of {measured} customers with DNS traffic, \
                         across {nodes} access nodes, while their connections are fine: the resolvers they use are failing."
                    )
                }));
            }
            for (ip, bad) in &failing {
                for (cust, _) in bad {
                    if let Some(f) = w.open.get_mut(cust.customer_id.as_str()) {
                        f.retain(|m, _| !DNS_METRICS.contains(&m.as_str()));
                    }
                }
                let bad: Vec<(&Customer, &Findings)> = bad.iter().map(|(c, f)| (*c, f)).collect();
                let nodes = bad.iter().map(|(c, _)| c.access_node.as_str()).collect::<BTreeSet<_>>().len();
                let (n, measured) = (bad.len(), asked.get(ip).copied().unwrap_or(0));
                w.candidates.push(group_candidate(IncidentKind::Resolver, ("resolver", ip), &bad, measured, &DNS_METRICS, |m, v, t| {
                    format!(
                        "{m} from resolver {ip} is {v} (median) against {t} allowed for {n} of the {measured} customers \
                         who asked it, across {nodes} access nodes, while their connections are fine: resolver {ip} is failing."
                    )
                }));
            }
        }
    }
}

/// Service: one service bad across access nodes, while the same customers' other services are fine
/// on that metric.
pub(super) fn service(w: &mut Window<'_>) -> BTreeSet<String> {
    let c = &w.config.correlation;
    let mut services_judged: BTreeSet<String> = BTreeSet::new();
    {
        let mut per_service: BTreeMap<&str, Vec<(&Customer, Findings, bool)>> = BTreeMap::new();
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, line) in w.lines {
            let Some(customer) = w.customers.get(key) else { continue };
            let plan = w.config.plan(&customer.plan);
            let judged_services: Vec<(&str, Findings, BTreeSet<String>)> = line
                .services
                .iter()
                .filter(|(s, _)| s.as_str() != edgeprobe_wire::OTHER_SERVICE)
                .map(|(s, m)| {
                    let (bad, judged) = judge(m, plan, None, &customer.customer_id, c);
                    (s.as_str(), bad, judged)
                })
                .collect();
            for (service, bad, judged) in &judged_services {
                if judged.is_empty() {
                    continue;
                }
                *users.entry(service).or_default() += 1;
                if bad.is_empty() {
                    continue;
                }
                // Contrast: another service of this customer is measured and fine on a metric
                // this one fails.
                let contrast = judged_services.iter().any(|(other, obad, ojudged)| {
                    other != service && bad.keys().any(|m| ojudged.contains(m) && !obad.contains_key(m))
                });
                per_service.entry(service).or_default().push((customer, bad.clone(), contrast));
            }
        }
        services_judged.extend(users.keys().map(|s| s.to_string()));
        for (service, bad) in per_service {
            let measured = users.get(service).copied().unwrap_or(0);
            let nodes: BTreeSet<&str> = bad.iter().map(|(c, _, _)| c.access_node.as_str()).collect();
            let contrasted = bad.iter().filter(|(_, _, contrast)| *contrast).count();
            if bad.len() < c.group_min_customers
                || (bad.len() as f64) < c.group_fraction * measured as f64
                || nodes.len() < 2
                || contrasted < c.group_min_customers.min(bad.len())
            {
                continue;
            }
            let findings: Vec<(&Customer, &Findings)> = bad.iter().map(|(c, f, _)| (*c, f)).collect();
            for (cust, f) in &findings {
                if let Some(open) = w.open.get_mut(cust.customer_id.as_str()) {
                    open.retain(|m, _| !f.contains_key(m));
                }
            }
            let (n, nodes) = (findings.len(), nodes.len());
            let scope = ("service", service);
            w.candidates.push(group_candidate(IncidentKind::Service, scope, &findings, measured, &[], |m, v, t| {
                format!(
                    "{service}: {m} is {v} (median) against {t} allowed for {n} of {measured} customers using it, \
                     across {nodes} access nodes, while their other services are fine: the service itself is degraded."
                )
            }));
        }
    }
    services_judged
}

/// Journeys: one journey failing for customers across access nodes while their connections are
/// otherwise fine: the service behind the journey is at fault, not their lines.
pub(super) fn journey(w: &mut Window<'_>) -> BTreeSet<String> {
    let c = &w.config.correlation;
    let mut journeys_judged: BTreeSet<String> = BTreeSet::new();
    {
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        let mut per_metric: BTreeMap<&str, Vec<(&Customer, &Findings, bool)>> = BTreeMap::new();
        for (customer, bad, judged) in w.verdicts.values() {
            let runs: BTreeSet<&str> = judged.iter().filter_map(|m| journey_of(m)).collect();
            for j in runs {
                *users.entry(j).or_default() += 1;
            }
            let contrast = judged.iter().any(|m| NETWORK_METRICS.contains(&m.as_str()) && !bad.contains_key(m));
            for m in bad.keys().filter(|m| journey_of(m).is_some()) {
                per_metric.entry(m).or_default().push((customer, bad, contrast));
            }
        }
        journeys_judged.extend(users.keys().map(|j| j.to_string()));
        let mut explained: BTreeSet<&str> = BTreeSet::new();
        // Failures before latency, so a journey gives one incident.
        let ordered =
            per_metric.iter().filter(|(m, _)| is_ratio(m)).chain(per_metric.iter().filter(|(m, _)| !is_ratio(m)));
        for (metric, bad) in ordered {
            let journey = journey_of(metric).expect("journey metrics only");
            let measured = users.get(journey).copied().unwrap_or(0);
            let nodes: BTreeSet<&str> = bad.iter().map(|(c, _, _)| c.access_node.as_str()).collect();
            let contrasted = bad.iter().filter(|(_, _, contrast)| *contrast).count();
            if explained.contains(journey)
                || bad.len() < c.group_min_customers
                || (bad.len() as f64) < c.group_fraction * measured as f64
                || nodes.len() < 2
                || contrasted < c.group_min_customers.min(bad.len())
            {
                continue;
            }
            explained.insert(journey);
            let findings: Vec<(&Customer, &Findings)> = bad.iter().map(|(c, f, _)| (*c, *f)).collect();
            for (cust, _) in &findings {
                if let Some(open) = w.open.get_mut(cust.customer_id.as_str()) {
                    open.retain(|m, _| journey_of(m) != Some(journey));
                }
            }
            let (n, nodes) = (findings.len(), nodes.len());
            w.candidates.push(group_candidate(
                IncidentKind::Service,
                ("journey", journey),
                &findings,
                measured,
                &[metric],
                |m, v, t| {
                    format!(
                        "{m} reach {v} (median) against {t} allowed for {n} of {measured} customers who ran it, across \
                         {nodes} access nodes, while their connections are otherwise fine: the service behind the \
                         journey is failing."
                    )
                },
            ));
        }
    }
    journeys_judged
}

/// A failing service also explains what a customer saw of it in a window too sparse to judge the
/// service on its own (a few slow samples that still make the whole line's p90).
pub(super) fn explained_by_services(w: &mut Window<'_>, active: &HashMap<String, Incident>) {
    let implicated: BTreeSet<String> = w
        .candidates
        .iter()
        .filter(|c| c.kind == IncidentKind::Service)
        .filter_map(|c| c.scope.get("service").cloned())
        .chain(
            active.values().filter(|i| i.kind == IncidentKind::Service).filter_map(|i| i.scope.get("service").cloned()),
        )
        .collect();
    for (key, line) in w.lines {
        let Some(customer) = w.customers.get(key) else { continue };
        let Some(findings) = w.open.get_mut(customer.customer_id.as_str()) else { continue };
        let plan = w.config.plan(&customer.plan);
        findings.retain(|metric, _| {
            !implicated.iter().any(|service| {
                let slow = line.services.get(service).and_then(|m| m.latency.get(metric.as_str()));
                slow.is_some_and(|l| plan.latency_us(metric).is_some_and(|t| l.p90 > t))
            })
        });
    }
}

/// Access nodes, and regions where several nodes fail together.
pub(super) fn nodes<'a>(w: &mut Window<'a>) -> (BTreeMap<(&'a str, &'a str), usize>, BTreeSet<String>) {
    let c = &w.config.correlation;
    let mut node_measured: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut node_bad: BTreeMap<(&str, &str), Vec<(&Customer, &Findings)>> = BTreeMap::new();
    for (id, (customer, _, judged)) in &w.verdicts {
        if !judged.iter().any(|m| is_network(m)) {
            continue;
        }
        let node = (customer.region.as_str(), customer.access_node.as_str());
        *node_measured.entry(node).or_default() += 1;
        let findings = &w.open[id];
        if !findings.is_empty() {
            node_bad.entry(node).or_default().push((customer, findings));
        }
    }
    let failing: Vec<NodeFindings> = node_bad
        .iter()
        .filter(|(node, bad)| {
            bad.len() >= c.group_min_customers && bad.len() as f64 >= c.group_fraction * node_measured[*node] as f64
        })
        .map(|(n, b)| (*n, b))
        .collect();
    let mut by_region: BTreeMap<&str, Vec<NodeFindings>> = BTreeMap::new();
    for f in &failing {
        by_region.entry(f.0.0).or_default().push(*f);
    }
    let mut grouped_customers: BTreeSet<String> = BTreeSet::new();
    for (region, nodes) in by_region {
        if nodes.len() >= c.region_min_nodes.max(2) {
            let all: Vec<(&Customer, &Findings)> = nodes.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            let measured: usize = nodes.iter().map(|(n, _)| node_measured[n]).sum();
            let names: Vec<&str> = nodes.iter().map(|(n, _)| n.1).collect();
            grouped_customers.extend(all.iter().map(|(c, _)| c.customer_id.clone()));
            let (count, list, n) = (names.len(), names.join(", "), all.len());
            let mut region_candidate =
                group_candidate(IncidentKind::Region, ("region", region), &all, measured, &[], |m, v, t| {
                    format!(
                        "{count} access nodes in region {region} ({list}) are failing together: {m} is {v} (median) \
                         against {t} allowed for {n} of {measured} measured customers. A shared upstream \
                         (aggregation, transport or core) in the region is the likely fault."
                    )
                });
            region_candidate.evidence["access_nodes"] = json!(names);
            w.candidates.push(region_candidate);
        } else {
            for ((_, node), bad) in nodes {
                let measured = node_measured[&(region, node)];
                let home_fine = bad.iter().all(|(c, _)| {
                    HOME_SIDES.iter().all(|(h, _)| !w.verdicts[c.customer_id.as_str()].1.contains_key(*h))
                });
                grouped_customers.extend(bad.iter().map(|(c, _)| c.customer_id.clone()));
                let home = if home_fine { ", while their home side is fine" } else { "" };
                let n = bad.len();
                let scope = ("access_node", node);
                w.candidates.push(group_candidate(IncidentKind::AccessNode, scope, bad, measured, &[], |m, v, t| {
                    format!(
                        "{n} of {measured} measured customers behind access node {node} have {m} of {v} (median) \
                         against {t} allowed{home}: the fault lies at the access node or upstream of it."
                    )
                }));
            }
        }
    }
    (node_measured, grouped_customers)
}

/// Customers: degraded, and nothing wider explains it.
pub(super) fn customer(w: &mut Window<'_>, grouped_customers: &BTreeSet<String>) {
    for (id, findings) in &w.open {
        if findings.is_empty() || grouped_customers.contains(*id) {
            continue;
        }
        let (customer, _, _) = &w.verdicts[id];
        let (metric, f) = findings
            .iter()
            .max_by(|a, b| (a.1.value / a.1.threshold).total_cmp(&(b.1.value / b.1.threshold)))
            .expect("not empty");
        let all: Vec<String> = findings.iter().map(|(m, f)| describe(m, f)).collect();
        w.candidates.push(Candidate {
            kind: IncidentKind::Customer,
            scope: BTreeMap::from([("customer_id".to_string(), id.to_string())]),
            metric: metric.to_string(),
            customers: BTreeSet::from([id.to_string()]),
            evidence: json!({"metric": metric, "unit": unit(metric), "value": figure(metric, f.value),
                "threshold": figure(metric, f.threshold), "basis": f.basis, "findings": all}),
            cause: format!(
                "Only this customer is degraded: {}. Other customers on access node {} are fine, so the fault is on \
                 this line (drop cable, CPE, line card port).",
                all.join("; "),
                customer.access_node
            ),
        });
    }
}
