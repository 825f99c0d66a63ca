//! Lines' working latency and Quality of Outcome by window (`line_quality`).

use super::{Result, Store, Value, json, marks};
use crate::quality::LineQuality;
use std::collections::HashMap;

impl Store {
    /// Stores a window's figures, replacing any from an earlier evaluation of it.
    pub fn save_line_quality(&mut self, rows: &[LineQuality]) -> Result<()> {
        for q in rows {
            let idle = |v: Option<u64>| v.map_or(Value::Null, Value::from);
            self.db.execute(
                "INSERT INTO line_quality (customer_id, window_start, home_idle_us, network_idle_us, figures) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id, window_start) DO UPDATE SET \
                 home_idle_us = excluded.home_idle_us, network_idle_us = excluded.network_idle_us, \
                 figures = excluded.figures",
                &[
                    q.customer_id.as_str().into(),
                    q.window_start.into(),
                    idle(q.home.idle_low_us),
                    idle(q.network.idle_low_us),
                    json(q).into(),
                ],
            )?;
        }
        Ok(())
    }

    /// Per customer, the lowest idle low percentile of windows in `[since, until)`, home and
    /// network side.
    pub fn idle_baselines(
        &mut self,
        customer_ids: &[String],
        since: i64,
        until: i64,
    ) -> Result<HashMap<String, [Option<u64>; 2]>> {
        let mut out = HashMap::new();
        for chunk in customer_ids.chunks(500) {
            let sql = format!(
                "SELECT customer_id, MIN(home_idle_us), MIN(network_idle_us) FROM line_quality \
                 WHERE window_start >= ? AND window_start < ? AND customer_id IN ({}) GROUP BY customer_id",
                marks(chunk.len())
            );
            let mut params: Vec<Value> = vec![since.into(), until.into()];
            params.extend(chunk.iter().map(Value::from));
            for r in self.db.query(&sql, &params)? {
                let us = |i: usize| r.opt_int(i).map(|v| v.max(0) as u64);
                out.insert(r.text(0), [us(1), us(2)]);
            }
        }
        Ok(out)
    }

    /// A customer's figures of windows since `since_ms`, oldest first.
    pub fn line_quality(&mut self, customer_id: &str, since_ms: i64) -> Result<Vec<LineQuality>> {
        let rows = self.db.query(
            "SELECT figures FROM line_quality WHERE customer_id = ? AND window_start >= ? ORDER BY window_start",
            &[customer_id.into(), since_ms.into()],
        )?;
        // A row this build cannot read is skipped, not fatal: figures are derived data.
        Ok(rows.iter().filter_map(|r| serde_json::from_str(&r.text(0)).ok()).collect())
    }
}
