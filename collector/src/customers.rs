//! Customer records from CSV. The header names the columns; the known ones are checked and the
//! rest are kept as attributes. A bad row is reported with its line number and skipped, so one
//! typo does not keep a whole customer base out.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Customer {
    pub customer_id: String,
    pub subscriber_id: String,
    pub segment: String,
    pub plan: String,
    pub region: String,
    pub access_node: String,
    pub monthly_value: f64,
    pub contact_opt_out: bool,
    pub attributes: BTreeMap<String, String>,
}

/// A row that did not load, by its line in the file (the header is line 1).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub customers: Vec<Customer>,
    pub errors: Vec<RowError>,
}

const REQUIRED: [&str; 8] =
    ["customer_id", "subscriber_id", "segment", "plan", "region", "access_node", "monthly_value", "contact_opt_out"];

/// Parses a customer CSV. A missing required column fails the whole file; anything wrong
/// within a row fails only that row. Duplicate ids within the file: the later row wins, and
/// the earlier one is reported.
pub fn parse_csv(input: impl std::io::Read) -> Result<Parsed, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let header = reader.headers().map_err(|e| format!("line 1: unreadable header: {e}"))?.clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut index = [0usize; 8];
    for (i, name) in REQUIRED.iter().enumerate() {
        index[i] = column(name).ok_or_else(|| format!("line 1: missing column {name:?}"))?;
    }
    let extra: Vec<(usize, String)> =
        header.iter().enumerate().filter(|(i, _)| !index.contains(i)).map(|(i, h)| (i, h.to_string())).collect();

    let mut parsed = Parsed::default();
    let mut seen: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut seen_subscriber: BTreeMap<String, String> = BTreeMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                parsed.errors.push(RowError { line, reason: format!("unreadable row: {e}") });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            let reason = format!("{} fields, header has {}", record.len(), header.len());
            parsed.errors.push(RowError { line, reason });
            continue;
        }
        let field = |i: usize| record.get(index[i]).unwrap_or("").to_string();
        let row = (|| -> Result<Customer, String> {
            let customer_id = field(0);
            let subscriber_id = field(1);
            for (name, value) in [("customer_id", &customer_id), ("subscriber_id", &subscriber_id)] {
                if value.is_empty() {
                    return Err(format!("{name} is empty"));
                }
            }
            let value = field(6);
            let monthly_value: f64 = value.parse().map_err(|_| format!("monthly_value {value:?} is not a number"))?;
            if !monthly_value.is_finite() || monthly_value < 0.0 {
                return Err(format!("monthly_value {value:?} must be a non-negative number"));
            }
            let opt = field(7);
            let contact_opt_out = match opt.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => true,
                "false" | "no" | "0" | "" => false,
                _ => return Err(format!("contact_opt_out {opt:?} is not true or false")),
            };
            let attributes =
                extra.iter().map(|(i, name)| (name.clone(), record.get(*i).unwrap_or("").to_string())).collect();
            Ok(Customer {
                customer_id,
                subscriber_id,
                segment: field(2),
                plan: field(3),
                region: field(4),
                access_node: field(5),
                monthly_value,
                contact_opt_out,
                attributes,
            })
        })();
        match row {
            Ok(customer) => {
                if let Some(owner) = seen_subscriber.get(&customer.subscriber_id) {
                    if *owner != customer.customer_id {
                        let reason =
                            format!("subscriber_id {:?} already belongs to customer {owner:?}", customer.subscriber_id);
                        parsed.errors.push(RowError { line, reason });
                        continue;
                    }
                }
                seen_subscriber.insert(customer.subscriber_id.clone(), customer.customer_id.clone());
                if let Some((slot, earlier)) = seen.get(&customer.customer_id).copied() {
                    parsed.errors.push(RowError {
                        line: earlier,
                        reason: format!(
                            "customer_id {:?} appears again on line {line}; that row wins",
                            customer.customer_id
                        ),
                    });
                    seen.insert(customer.customer_id.clone(), (slot, line));
                    parsed.customers[slot] = customer;
                } else {
                    seen.insert(customer.customer_id.clone(), (parsed.customers.len(), line));
                    parsed.customers.push(customer);
                }
            }
            Err(reason) => parsed.errors.push(RowError { line, reason }),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_load() {
        let csv = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out,tier\n\
                   C1,S1,residential,fiber-300,north,OLT-1,49.5,false,gold\n\
                   C2,S2,residential,fiber-300,north,OLT-1,abc,false,\n\
                   C3,,business,fiber-1g,south,OLT-2,120,true,\n\
                   C4,S4,business,fiber-1g,south,OLT-2,120,maybe,\n\
                   C5,S5,business,fiber-1g,south\n\
                   C6,S1,residential,fiber-300,north,OLT-1,10,false,\n\
                   C7,S7,premium,fiber-1g,south,OLT-2,99,TRUE,x\n";
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        let ids: Vec<_> = parsed.customers.iter().map(|c| c.customer_id.as_str()).collect();
        assert_eq!(ids, ["C1", "C7"]);
        let lines: Vec<_> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7]);
        assert!(parsed.errors[0].reason.contains("monthly_value"));
        assert!(parsed.errors[1].reason.contains("subscriber_id is empty"));
        assert!(parsed.errors[3].reason.contains("5 fields"));
        assert!(parsed.errors[4].reason.contains("already belongs"));
        assert_eq!(parsed.customers[0].attributes["tier"], "gold");
        assert!(parsed.customers[1].contact_opt_out);
    }

    #[test]
    fn a_missing_column_fails_the_file() {
        let err = parse_csv("customer_id,subscriber_id\nC1,S1\n".as_bytes()).unwrap_err();
        assert!(err.contains("missing column \"segment\""), "{err}");
    }
}
