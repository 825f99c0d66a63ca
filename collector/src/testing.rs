//! Set-up shared by the collector's tests and benchmarks (and the end-to-end tests): a customer
//! with plain defaults, the wire crate's golden reports, a temporary directory.

use crate::customers::Customer;
use edgeprobe_wire::Report;
use std::path::PathBuf;

/// A residential customer on plan `basic`, line `sub-ID`, access node OLT-1 in region north,
/// worth 10 a month, contactable. Change what a test needs with `Customer { .., ..customer(id) }`.
pub fn customer(id: &str) -> Customer {
    Customer {
        customer_id: id.into(),
        subscriber_id: format!("sub-{id}"),
        segment: "residential".into(),
        plan: "basic".into(),
        region: "north".into(),
        access_node: "OLT-1".into(),
        monthly_value: 10.0,
        contact_opt_out: false,
        contact_channels: Vec::new(),
        partner_offers: false,
        dependent: false,
        attributes: Default::default(),
    }
}

/// A golden report of the wire crate (`agent/wire/tests/golden/NAME`), decoded.
pub fn golden_report(name: &str) -> Report {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/wire/tests/golden")).join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    edgeprobe_wire::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An empty directory of this process for a test's files, named by `tag`.
pub fn test_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeprobe-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory for the test");
    dir
}
