//! The embedded MQTT broker (rumqttd) for single-box use: agents and the collector connect to
//! it like to any broker, so moving to Mosquitto or a cluster later changes only a URL.

use std::net::SocketAddr;

/// Starts the broker on its own threads; it runs until the process ends.
pub fn start(listen: SocketAddr) -> anyhow::Result<()> {
    // Reports are at most 4 MiB (the wire limit); queues are bounded per connection.
    let text = format!(
        r#"
id = 0
[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 4194304
max_inflight_count = 200
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text)?;
    // Fail early and clearly if the port is taken, rather than inside the broker's thread.
    std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("embedded broker on {listen}: {e}"))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new().name("broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            eprintln!("edgeprobe-collector: embedded broker stopped: {e}");
        }
    })?;
    Ok(())
}
