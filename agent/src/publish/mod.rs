//! Delivering reports to the broker: MQTT over TCP or TLS with rumqttc, at least once, through a
//! bounded on-disk spool.

pub mod mqtt;
pub mod spool;
