//! Customer records, by customer id and by the subscriber key their line reports under.

use super::{Result, Row, Store, Value, json, marks};
use crate::customers::Customer;
use std::collections::{HashMap, HashSet};

pub(crate) const CUSTOMER_COLUMNS: &str = "customer_id, subscriber_id, segment, plan, region, access_node, monthly_value, contact_opt_out, attributes, \
     contact_channels, partner_offers, dependent";

/// An `agent_subscribers s` row whose line no other agent has reported on since: a line moves
/// with its gateway, and an agent that falls silent speaks only for the lines it still serves.
pub(crate) const STILL_THE_AGENTS: &str = "NOT EXISTS (SELECT 1 FROM agent_subscribers o WHERE o.subscriber_id = s.subscriber_id \
     AND o.agent_id <> s.agent_id AND o.last_window_ms > s.last_window_ms)";

pub(crate) fn customer(r: &Row) -> Customer {
    Customer {
        customer_id: r.text(0),
        subscriber_id: r.text(1),
        segment: r.text(2),
        plan: r.text(3),
        region: r.text(4),
        access_node: r.text(5),
        monthly_value: r.real(6),
        contact_opt_out: r.int(7) != 0,
        attributes: serde_json::from_str(&r.text(8)).unwrap_or_default(),
        contact_channels: r.text(9).split(';').filter(|c| !c.is_empty()).map(str::to_string).collect(),
        partner_offers: r.int(10) != 0,
        dependent: r.int(11) != 0,
    }
}

impl Store {
    /// Inserts or updates customers by id; returns how many were new.
    pub fn upsert_customers(&mut self, customers: &[Customer], now_ms: i64) -> Result<usize> {
        self.transaction(false, |s| {
            let mut new = 0;
            for c in customers {
                // A subscriber moving to another customer id frees its old row first.
                s.db.execute(
                    "DELETE FROM customers WHERE subscriber_id = ? AND customer_id <> ?",
                    &[c.subscriber_id.as_str().into(), c.customer_id.as_str().into()],
                )?;
                let existed =
                    !s.db.query("SELECT 1 FROM customers WHERE customer_id = ?", &[c.customer_id.as_str().into()])?.is_empty();
                s.db.execute(
                    "INSERT INTO customers (customer_id, subscriber_id, segment, plan, region, access_node, monthly_value, \
                     contact_opt_out, attributes, updated_ms, contact_channels, partner_offers, dependent) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (customer_id) DO UPDATE SET subscriber_id = excluded.subscriber_id, \
                     segment = excluded.segment, plan = excluded.plan, region = excluded.region, \
                     access_node = excluded.access_node, monthly_value = excluded.monthly_value, \
                     contact_opt_out = excluded.contact_opt_out, attributes = excluded.attributes, \
                     updated_ms = excluded.updated_ms, contact_channels = excluded.contact_channels, \
                     partner_offers = excluded.partner_offers, dependent = excluded.dependent",
                    &[
                        c.customer_id.as_str().into(),
                        c.subscriber_id.as_str().into(),
                        c.segment.as_str().into(),
                        c.plan.as_str().into(),
                        c.region.as_str().into(),
                        c.access_node.as_str().into(),
                        c.monthly_value.into(),
                        c.contact_opt_out.into(),
                        json(&c.attributes).into(),
                        now_ms.into(),
                        c.contact_channels.join(";").into(),
                        c.partner_offers.into(),
                        c.dependent.into(),
                    ],
                )?;
                new += usize::from(!existed);
            }
            Ok(new)
        })
    }

    pub fn customer(&mut self, customer_id: &str) -> Result<Option<Customer>> {
        let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = ?");
        Ok(self.db.query(&sql, &[customer_id.into()])?.first().map(customer))
    }

    /// The customers behind the given subscriber keys; unknown keys are left out.
    pub fn customers_by_subscriber(&mut self, subscribers: &[String]) -> Result<HashMap<String, Customer>> {
        let mut out = HashMap::with_capacity(subscribers.len());
        for chunk in subscribers.chunks(500) {
            let sql =
                format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE subscriber_id IN ({})", marks(chunk.len()));
            let params: Vec<Value> = chunk.iter().map(Value::from).collect();
            for r in self.db.query(&sql, &params)? {
                let c = customer(&r);
                out.insert(c.subscriber_id.clone(), c);
            }
        }
        Ok(out)
    }

    pub fn customers_by_id(&mut self, ids: &[String]) -> Result<Vec<Customer>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id IN ({})", marks(chunk.len()));
            let params: Vec<Value> = chunk.iter().map(Value::from).collect();
            out.extend(self.db.query(&sql, &params)?.iter().map(customer));
        }
        Ok(out)
    }

    pub fn customer_count(&mut self) -> Result<i64> {
        Ok(self.db.query("SELECT COUNT(*) FROM customers", &[])?.first().map_or(0, |r| r.int(0)))
    }

    /// Up to `limit` customers not in `exclude`, from `region` when given: a comparison group.
    pub fn other_customers(&mut self, exclude: &[String], region: Option<&str>, limit: i64) -> Result<Vec<Customer>> {
        let take = limit + exclude.len() as i64;
        let rows = match region {
            Some(r) => {
                let sql =
                    format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE region = ? ORDER BY customer_id LIMIT ?");
                self.db.query(&sql, &[r.into(), take.into()])?
            }
            None => {
                let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY customer_id LIMIT ?");
                self.db.query(&sql, &[take.into()])?
            }
        };
        let skip: HashSet<&str> = exclude.iter().map(String::as_str).collect();
        Ok(rows.iter().map(customer).filter(|c| !skip.contains(c.customer_id.as_str())).take(limit as usize).collect())
    }
}
