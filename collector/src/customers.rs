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
    /// The channels the customer accepts contact on, from [`CHANNELS`]; empty accepts any.
    pub contact_channels: Vec<String>,
    /// Whether offers of partners' products may be made.
    pub partner_offers: bool,
    /// A dependent line (parental control): never an offer.
    pub dependent: bool,
    pub attributes: BTreeMap<String, String>,
}

/// The contact channels a customer record may name.
pub const CHANNELS: [&str; 4] = ["email", "sms", "app", "call"];

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
/// Columns a file may leave out: without them, any channel, no partner offers, not dependent.
const OPTIONAL: [&str; 3] = ["contact_channels", "partner_offers", "dependent"];

/// The largest `monthly_value` taken: more is a typo or an attack, and sums of a million
/// customers' values must stay exact enough to rank incidents by.
pub const MAX_MONTHLY_VALUE: f64 = 1e9;
/// The longest id, and the longest other field, in bytes.
const MAX_ID_BYTES: usize = 256;
const MAX_FIELD_BYTES: usize = 4096;

/// Why a customer file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("unreadable: {0}")]
    Unreadable(std::io::Error),
    #[error("line 1: unreadable header: {0}")]
    Header(csv::Error),
    #[error("line 1: missing header")]
    NoHeader,
    #[error("line 1: missing column {0:?}")]
    MissingColumn(&'static str),
}

/// Why one row gives no customer.
#[derive(Debug, thiserror::Error)]
enum RowProblem {
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} must be at most {MAX_ID_BYTES} bytes of printable characters")]
    BadId(&'static str),
    #[error("field {0} is longer than {MAX_FIELD_BYTES} bytes")]
    LongField(usize),
    #[error("monthly_value {0:?} is not a number")]
    NotANumber(String),
    #[error("monthly_value {0:?} must be a number from 0 to {MAX_MONTHLY_VALUE}")]
    OutOfRange(String),
    #[error("{0} {1:?} is not true or false")]
    NotABool(&'static str, String),
    #[error("contact_channels {0:?} names {1:?}; channels are email, sms, app and call, separated by ';'")]
    Channel(String, String),
}

/// Parses a customer CSV. A missing required column fails the whole file; anything wrong
/// within a row fails only that row, named by its line. A quote left open does not swallow
/// the rest of the file: a record that runs over several lines and then has the wrong number
/// of fields is reported at the line it began on, and reading goes on from the next line.
/// Duplicate ids within the file: the later row wins, and the earlier one is reported. Who
/// owns a subscriber is judged on the file's final rows, so a customer that moves to another
/// line frees its old one for a later row.
pub fn parse_csv(mut input: impl std::io::Read) -> Result<Parsed, CsvError> {
    let mut text = Vec::new();
    input.read_to_end(&mut text).map_err(CsvError::Unreadable)?;
    let builder = || {
        let mut b = csv::ReaderBuilder::new();
        b.flexible(true).trim(csv::Trim::All).has_headers(false);
        b
    };
    let mut reader = builder().from_reader(&text[..]);
    let mut header = csv::StringRecord::new();
    if !reader.read_record(&mut header).map_err(CsvError::Header)? {
        return Err(CsvError::NoHeader);
    }
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut index = [0usize; 8];
    for (i, name) in REQUIRED.iter().enumerate() {
        index[i] = column(name).ok_or(CsvError::MissingColumn(name))?;
    }
    let optional = OPTIONAL.map(column);
    let known = |i: &usize| index.contains(i) || optional.contains(&Some(*i));
    let extra: Vec<(usize, String)> =
        header.iter().enumerate().filter(|(i, _)| !known(i)).map(|(i, h)| (i, h.to_string())).collect();
    let columns = Columns { index, optional, extra };

    let mut parsed = Parsed::default();
    // Rows as read, each with its line; later rows for the same customer replace earlier ones.
    let mut rows: Vec<(u64, Customer)> = Vec::new();
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    // Where the reader started in `text`, and that place's line number.
    let (mut base, mut base_line) = (0usize, 1u64);
    let mut record = csv::StringRecord::new();
    loop {
        let read = reader.read_record(&mut record);
        let end = reader.position().clone();
        let start = match &read {
            Ok(_) => record.position().cloned().unwrap_or_else(|| end.clone()),
            Err(e) => e.position().cloned().unwrap_or_else(|| end.clone()),
        };
        let line = base_line + start.line() - 1;
        match read {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                parsed.errors.push(RowError { line, reason: format!("unreadable row: {e}") });
                continue;
            }
        }
        if record.len() != header.len() {
            let last = base_line + end.line().saturating_sub(2).max(start.line()) - 1;
            if last > line && record.iter().any(|f| f.contains('\n')) {
                // A quote opened here and closed lines later, or never: report it, and read
                // again from the next line as if the quote were not there.
                parsed.errors.push(RowError {
                    line,
                    reason: format!("a quote opened on this line is not closed before line {}", last + 1),
                });
                let at = base + start.byte() as usize;
                let next = text[at..].iter().position(|&b| b == b'\n').map_or(text.len(), |i| at + i + 1);
                (base, base_line) = (next, line + 1);
                reader = builder().from_reader(&text[next..]);
                continue;
            }
            let reason = format!("{} fields, header has {}", record.len(), header.len());
            parsed.errors.push(RowError { line, reason });
            continue;
        }
        match customer(&record, &columns) {
            Ok(c) => match by_id.get(&c.customer_id) {
                Some(&slot) => {
                    let earlier = rows[slot].0;
                    let reason = format!("customer_id {:?} appears again on line {line}; that row wins", c.customer_id);
                    parsed.errors.push(RowError { line: earlier, reason });
                    rows[slot] = (line, c);
                }
                None => {
                    by_id.insert(c.customer_id.clone(), rows.len());
                    rows.push((line, c));
                }
            },
            Err(problem) => parsed.errors.push(RowError { line, reason: problem.to_string() }),
        }
    }
    // One subscriber, one customer, among the final rows: the first by line keeps it.
    rows.sort_by_key(|(line, _)| *line);
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (line, c) in rows {
        if let Some(other) = owner.get(&c.subscriber_id) {
            let reason = format!("subscriber_id {:?} already belongs to customer {other:?}", c.subscriber_id);
            parsed.errors.push(RowError { line, reason });
            continue;
        }
        owner.insert(c.subscriber_id.clone(), c.customer_id.clone());
        parsed.customers.push(c);
    }
    parsed.errors.sort_by_key(|e| e.line);
    Ok(parsed)
}

/// Where each column is in the file.
struct Columns {
    index: [usize; 8],
    optional: [Option<usize>; 3],
    /// The rest, kept as attributes.
    extra: Vec<(usize, String)>,
}

fn boolean(name: &'static str, value: &str) -> Result<bool, RowProblem> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" | "" => Ok(false),
        _ => Err(RowProblem::NotABool(name, value.to_string())),
    }
}

/// `email;sms`: known channels, each once, in the order given.
fn channels(value: &str) -> Result<Vec<String>, RowProblem> {
    let mut out: Vec<String> = Vec::new();
    for c in value.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let c = c.to_ascii_lowercase();
        if !CHANNELS.contains(&c.as_str()) {
            return Err(RowProblem::Channel(value.to_string(), c));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// One row's customer, or why it is none.
fn customer(record: &csv::StringRecord, columns: &Columns) -> Result<Customer, RowProblem> {
    let Columns { index, optional, extra } = columns;
    let field = |i: usize| record.get(index[i]).unwrap_or("").to_string();
    let optional = |i: usize| optional[i].and_then(|at| record.get(at)).unwrap_or("");
    let customer_id = field(0);
    let subscriber_id = field(1);
    for (name, value) in [("customer_id", &customer_id), ("subscriber_id", &subscriber_id)] {
        if value.is_empty() {
            return Err(RowProblem::Empty(name));
        }
        if value.len() > MAX_ID_BYTES || value.chars().any(char::is_control) {
            return Err(RowProblem::BadId(name));
        }
    }
    if let Some(long) = record.iter().position(|f| f.len() > MAX_FIELD_BYTES) {
        return Err(RowProblem::LongField(long + 1));
    }
    let value = field(6);
    let monthly_value: f64 = value.parse().map_err(|_| RowProblem::NotANumber(value.clone()))?;
    if !(0.0..=MAX_MONTHLY_VALUE).contains(&monthly_value) {
        return Err(RowProblem::OutOfRange(value));
    }
    let contact_opt_out = boolean("contact_opt_out", &field(7))?;
    let contact_channels = channels(optional(0))?;
    let partner_offers = boolean("partner_offers", optional(1))?;
    let dependent = boolean("dependent", optional(2))?;
    let attributes = extra.iter().map(|(i, name)| (name.clone(), record.get(*i).unwrap_or("").to_string())).collect();
    Ok(Customer {
        customer_id,
        subscriber_id,
        segment: field(2),
        plan: field(3),
        region: field(4),
        access_node: field(5),
        monthly_value,
        contact_opt_out,
        contact_channels,
        partner_offers,
        dependent,
        attributes,
    })
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

    const HEADER: &str = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out\n";

    /// A quote left open is one error at its line; every row after it still loads. A quoted
    /// field may still hold a line break when the record comes out whole.
    #[test]
    fn an_unterminated_quote_is_one_bad_row_not_the_rest_of_the_file() {
        let mut csv = HEADER.to_string();
        for i in 1..=10 {
            let segment = match i {
                4 => "\"residential".to_string(),
                7 => "\"two\nlines\"".to_string(),
                _ => "residential".to_string(),
            };
            csv += &format!("C{i},S{i},{segment},fiber,north,OLT-1,10,false\n");
        }
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        let ids: Vec<_> = parsed.customers.iter().map(|c| c.customer_id.as_str()).collect();
        assert_eq!(ids, ["C1", "C2", "C3", "C5", "C6", "C7", "C8", "C9", "C10"], "{:?}", parsed.errors);
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.errors[0].line, 5);
        assert!(parsed.errors[0].reason.contains("quote"), "{}", parsed.errors[0].reason);
        assert_eq!(parsed.customers[5].segment, "two\nlines");
        // Line numbers after the two-line row count both of its lines.
        let csv = format!("{HEADER}C1,S1,\"a\nb\",p,r,n,1,false\nC2,S2,x,p,r,n,oops,false\n\"C3,S3,x,p,r,n,1,false\n");
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        let lines: Vec<_> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 5], "{:?}", parsed.errors);
    }

    /// Ownership is judged on the file's final rows: C1 moves from S1 to S2, so S1 is free for
    /// C2 on a later line; two final rows for one line keep the first.
    #[test]
    fn a_customer_that_moves_frees_its_old_line() {
        let csv = format!(
            "{HEADER}C1,S1,r,p,r,n,1,false\nC1,S2,r,p,r,n,1,false\nC2,S1,r,p,r,n,1,false\nC3,S1,r,p,r,n,1,false\n"
        );
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        let owners: Vec<_> =
            parsed.customers.iter().map(|c| (c.customer_id.as_str(), c.subscriber_id.as_str())).collect();
        assert_eq!(owners, [("C1", "S2"), ("C2", "S1")]);
        let lines: Vec<_> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 5], "{:?}", parsed.errors);
    }

    #[test]
    fn numbers_and_sizes_are_bounded() {
        let long = "x".repeat(5000);
        let csv = format!(
            "{HEADER}C1,S1,r,p,r,n,1e308,false\nC2,S2,r,p,r,n,-1,false\nC3,S3,r,p,r,n,NaN,false\nC4,S4,{long},p,r,n,1,false\n\
             C5,S5,r,p,r,n,999999999,false\n"
        );
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        let lines: Vec<_> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{:?}", parsed.errors);
        assert_eq!(parsed.customers.len(), 1);
    }

    #[test]
    fn contact_rules_are_checked_and_optional() {
        let csv = "customer_id,subscriber_id,segment,plan,region,access_node,monthly_value,contact_opt_out,\
             contact_channels,partner_offers,dependent,tier\n\
             C1,S1,r,p,r,n,1,false,SMS; email;sms,true,false,gold\n\
             C2,S2,r,p,r,n,1,false,,,,\n\
             C3,S3,r,p,r,n,1,false,email;fax,false,false,\n\
             C4,S4,r,p,r,n,1,false,app,perhaps,false,\n\
             C5,S5,r,p,r,n,1,false,app,false,2,\n";
        let parsed = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(parsed.customers.len(), 2, "{:?}", parsed.errors);
        let c1 = &parsed.customers[0];
        assert_eq!(c1.contact_channels, ["sms", "email"]);
        assert!(c1.partner_offers && !c1.dependent);
        assert_eq!(c1.attributes.keys().collect::<Vec<_>>(), ["tier"], "known columns are not attributes");
        let c2 = &parsed.customers[1];
        assert!(c2.contact_channels.is_empty() && !c2.partner_offers && !c2.dependent);
        let reasons: Vec<_> = parsed.errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].1.contains("names \"fax\""), "{reasons:?}");
        assert!(reasons[1].1.contains("partner_offers \"perhaps\""), "{reasons:?}");
        assert!(reasons[2].1.contains("dependent \"2\""), "{reasons:?}");
        // Without the columns, the defaults.
        let plain = parse_csv(format!("{HEADER}C1,S1,r,p,r,n,1,false\n").as_bytes()).unwrap();
        assert!(plain.customers[0].contact_channels.is_empty() && !plain.customers[0].dependent);
    }

    #[test]
    fn a_missing_column_fails_the_file() {
        let err = parse_csv("customer_id,subscriber_id\nC1,S1\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("missing column \"segment\""), "{err}");
    }
}
