//! The MQTT side of the contract, shared by agent and collector: topic names and, with the
//! `mqtt` feature, broker URLs and TLS settings, so both ends read them the same way.

/// Where an agent publishes its window reports (QoS 1, not retained).
pub fn report_topic(agent_id: &str) -> String {
    format!("{TOPIC_PREFIX}{agent_id}/report")
}

/// Where an agent's retained birth message and last will live.
pub fn state_topic(agent_id: &str) -> String {
    format!("{TOPIC_PREFIX}{agent_id}/state")
}

/// Where a collector pushes an agent's journeys and opt-outs (JSON, QoS 1, retained).
pub fn config_topic(agent_id: &str) -> String {
    format!("{TOPIC_PREFIX}{agent_id}/config")
}

pub const TOPIC_PREFIX: &str = "edgeprobe/v1/agents/";

/// What a topic under [`TOPIC_PREFIX`] carries, and for which agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Topic<'a> {
    Report(&'a str),
    State(&'a str),
}

/// The longest agent id: topics stay short, and the id is a key in every stored report.
pub const MAX_AGENT_ID_BYTES: usize = 128;

/// Checks that `id` can be an agent's topic level: not empty, at most
/// [`MAX_AGENT_ID_BYTES`], and free of `/`, the wildcards `+` and `#` (a broker treats them as
/// filters, and one such id once crashed an embedded broker), and control characters.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_AGENT_ID_BYTES {
        return Err(format!("must be at most {MAX_AGENT_ID_BYTES} bytes, got {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '/' | '+' | '#') || c.is_control()) {
        return Err(format!("must not contain {c:?}: it is one MQTT topic level"));
    }
    Ok(())
}

pub fn parse_topic(topic: &str) -> Option<Topic<'_>> {
    let rest = topic.strip_prefix(TOPIC_PREFIX)?;
    let (agent, kind) = rest.split_once('/')?;
    if check_agent_id(agent).is_err() {
        return None;
    }
    match kind {
        "report" => Some(Topic::Report(agent)),
        "state" => Some(Topic::State(agent)),
        _ => None,
    }
}

/// (TLS, host, port) from `mqtt://` or `mqtts://`.
#[cfg(feature = "mqtt")]
pub fn parse_url(url: &str) -> anyhow::Result<(bool, String, u16)> {
    use anyhow::{Context, bail};
    let (tls, rest) = match url.split_once("://") {
        Some(("mqtt", rest)) => (false, rest),
        Some(("mqtts", rest)) => (true, rest),
        _ => bail!("expected mqtt://host:port or mqtts://host:port, got {url:?}"),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.trim_matches(['[', ']']).to_string(), p.parse().with_context(|| format!("port in {url:?}"))?)
        }
        _ => (rest.to_string(), if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        bail!("no host in {url:?}");
    }
    Ok((tls, host, port))
}

/// A rustls client config trusting only the CA in `ca` (PEM), with an optional client
/// certificate and key (PEM) for mutual TLS.
#[cfg(feature = "mqtt")]
pub fn tls_config(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<rustls::ClientConfig> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("ca_file {}", ca.display()))? {
        roots.add(cert.with_context(|| format!("ca_file {}", ca.display()))?)?;
    }
    // No root would fail every handshake, later and less clearly.
    anyhow::ensure!(!roots.is_empty(), "ca_file {} holds no PEM certificate", ca.display());
    let builder = builder.with_root_certificates(roots);
    Ok(match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("cert_file {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("cert_file {}", cert.display()))?;
            anyhow::ensure!(!chain.is_empty(), "cert_file {} holds no PEM certificate", cert.display());
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("key_file {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "mqtt")]
    #[test]
    fn urls() {
        assert_eq!(parse_url("mqtt://127.0.0.1:1883").unwrap(), (false, "127.0.0.1".into(), 1883));
        assert_eq!(parse_url("mqtts://broker.example").unwrap(), (true, "broker.example".into(), 8883));
        assert_eq!(parse_url("mqtt://[::1]:1884").unwrap(), (false, "::1".into(), 1884));
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
    }

    #[test]
    fn topics() {
        assert_eq!(parse_topic(&report_topic("gw-1")), Some(Topic::Report("gw-1")));
        assert_eq!(parse_topic(&state_topic("gw-1")), Some(Topic::State("gw-1")));
        assert_eq!(parse_topic("edgeprobe/v1/agents/gw-1/other"), None);
        assert_eq!(parse_topic("edgeprobe/v1/agents//report"), None);
        assert_eq!(parse_topic("elsewhere/gw-1/report"), None);
    }
}
