//! The embedded broker's front door. rumqttd checks passwords but has no access control, so
//! clients reach it through this gate, in the broker's process: it reads every packet a
//! client sends, checks the login and each PUBLISH, will and SUBSCRIBE against the agent
//! ACL (that of `config/mosquitto.acl.example`), and forwards what passes to rumqttd on a
//! loopback port. The gate logs in there with a secret made at each start, and rumqttd
//! takes no other login, so the loopback port is no way around it. What the broker sends
//! back is copied unread.
//!
//! With logins configured, an agent's user name is its id: it may publish its own report
//! and state and read its own config topic, nothing else. The collector's user reads every
//! agent's report and state and writes every config. Without logins (a broker listening on
//! loopback only, for development) anyone may do anything, as before.
//!
//! A client that steps outside its rights is disconnected, which MQTT 3.1.1 allows for a
//! refused PUBLISH (section 3.3.5); a silent drop would leave a QoS 1 client resending.

pub use crate::metrics::Denied;
use bytes::BytesMut;
use edgeprobe_wire::mqtt::{TOPIC_PREFIX, check_agent_id, config_topic, report_topic, state_topic};
use rumqttc::mqttbytes::v4::{Connect, Login, Packet, Publish};
use rumqttc::mqttbytes::{self, PacketType};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest packet a client may send: a report at the wire limit (4 MiB) and its topic.
pub const MAX_PACKET_BYTES: usize = (4 << 20) + 1024;
/// A client that has not sent its CONNECT by then is dropped, before it costs a broker link.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a client is, once its CONNECT passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Role {
    /// No logins configured: no rules either.
    Anyone,
    Collector,
    Agent(String),
}

pub struct Gate {
    /// User name to password; empty lets anyone in.
    pub users: BTreeMap<String, String>,
    /// The collector's own user name.
    pub collector: Option<String>,
    /// What the gate logs in to rumqttd with.
    pub secret: String,
}

impl Gate {
    /// Checks a CONNECT: the client id, the login where logins are configured, and the will.
    pub fn admit(&self, connect: &Connect) -> Result<Role, Denied> {
        if !connect.client_id.is_empty() && check_agent_id(&connect.client_id).is_err() {
            return Err(Denied::Login);
        }
        let role = if self.users.is_empty() {
            Role::Anyone
        } else {
            let login = connect.login.as_ref().ok_or(Denied::Login)?;
            let known = self.users.get(&login.username).is_some_and(|p| crate::http::auth::same(p, &login.password));
            if !known {
                return Err(Denied::Login);
            }
            if self.collector.as_deref() == Some(&login.username) {
                Role::Collector
            } else if check_agent_id(&login.username).is_ok() {
                Role::Agent(login.username.clone())
            } else {
                return Err(Denied::Login);
            }
        };
        match &connect.last_will {
            Some(will) if !may_publish(&role, &will.topic) => Err(Denied::Publish),
            _ => Ok(role),
        }
    }
}

pub fn may_publish(role: &Role, topic: &str) -> bool {
    match role {
        Role::Anyone => true,
        Role::Agent(id) => topic == report_topic(id) || topic == state_topic(id),
        Role::Collector => topic
            .strip_prefix(TOPIC_PREFIX)
            .and_then(|rest| rest.strip_suffix("/config"))
            .is_some_and(|id| check_agent_id(id).is_ok()),
    }
}

pub fn may_subscribe(role: &Role, filter: &str) -> bool {
    match role {
        Role::Anyone => true,
        Role::Agent(id) => filter == config_topic(id),
        Role::Collector => {
            // A shared subscription names its group first: `$share/{group}/{filter}`.
            let filter = match filter.strip_prefix("$share/").and_then(|rest| rest.split_once('/')) {
                Some((group, rest)) if !group.is_empty() && !group.contains(['+', '#']) => rest,
                Some(_) => return false,
                None => filter,
            };
            let Some((agent, kind)) = filter.strip_prefix(TOPIC_PREFIX).and_then(|rest| rest.split_once('/')) else {
                return false;
            };
            (agent == "+" || check_agent_id(agent).is_ok()) && matches!(kind, "report" | "state")
        }
    }
}

/// Accepts clients on `listener` and passes each, if it behaves, to rumqttd on `upstream`.
/// `denied` hears of every client turned away.
pub async fn run(
    gate: Arc<Gate>,
    listener: TcpListener,
    upstream: SocketAddr,
    denied: tokio::sync::mpsc::UnboundedSender<Denied>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (gate, denied) = (gate.clone(), denied.clone());
        tokio::spawn(async move {
            if let Err(Closed::Denied(why)) = serve(&gate, client, upstream).await {
                let _ = denied.send(why);
            }
        });
    }
}

enum Closed {
    /// The client left, broke the protocol, or the broker went away.
    Gone,
    Denied(Denied),
}

impl From<std::io::Error> for Closed {
    fn from(_: std::io::Error) -> Closed {
        Closed::Gone
    }
}

async fn serve(gate: &Gate, mut client: TcpStream, upstream: SocketAddr) -> Result<(), Closed> {
    let _ = client.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let first =
        tokio::time::timeout(CONNECT_TIMEOUT, next_packet(&mut client, &mut buf)).await.map_err(|_| Closed::Gone)??;
    let Ok(Packet::Connect(mut connect)) = Packet::read(&mut BytesMut::from(&first[..]), MAX_PACKET_BYTES) else {
        return Err(Closed::Gone);
    };
    let role = match gate.admit(&connect) {
        Ok(role) => role,
        Err(why) => {
            // CONNACK "not authorized" (MQTT 3.1.1, 3.2.2.3), as Mosquitto answers.
            let _ = client.write_all(&[0x20, 0x02, 0x00, 0x05]).await;
            return Err(Closed::Denied(why));
        }
    };
    let username = connect.login.take().map(|l| l.username).unwrap_or_default();
    connect.login = Some(Login::new(username, gate.secret.clone()));
    let mut broker = TcpStream::connect(upstream).await?;
    let _ = broker.set_nodelay(true);
    let mut rewritten = BytesMut::new();
    connect.write(&mut rewritten).map_err(|_| Closed::Gone)?;
    broker.write_all(&rewritten).await?;

    let (mut from_broker, mut to_client) = client.into_split();
    let (mut from_client, mut to_broker) = broker.into_split();
    let down = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_client).await;
        Err::<(), Closed>(Closed::Gone)
    };
    let up = async {
        loop {
            let packet = next_packet(&mut from_broker, &mut buf).await?;
            check(&role, &packet)?;
            to_broker.write_all(&packet).await?;
        }
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

/// Checks one packet from a client against its rights.
fn check(role: &Role, packet: &[u8]) -> Result<(), Closed> {
    if *role == Role::Anyone {
        return Ok(());
    }
    let header = mqttbytes::check(packet.iter(), MAX_PACKET_BYTES).map_err(|_| Closed::Gone)?;
    match header.packet_type().map_err(|_| Closed::Gone)? {
        PacketType::Connect => Err(Closed::Gone),
        PacketType::Publish => {
            let publish =
                Publish::read(header, bytes::Bytes::copy_from_slice(topic_part(packet))).map_err(|_| Closed::Gone)?;
            match may_publish(role, &publish.topic) {
                true => Ok(()),
                false => Err(Closed::Denied(Denied::Publish)),
            }
        }
        PacketType::Subscribe => match Packet::read(&mut BytesMut::from(packet), MAX_PACKET_BYTES) {
            Ok(Packet::Subscribe(s)) if s.filters.iter().all(|f| may_subscribe(role, &f.path)) => Ok(()),
            Ok(Packet::Subscribe(_)) => Err(Closed::Denied(Denied::Subscribe)),
            _ => Err(Closed::Gone),
        },
        _ => Ok(()),
    }
}

/// A PUBLISH up to the end of its topic (and a packet id's room), so checking a 4 MiB report
/// copies a few bytes, not the report. `Publish::read` takes the remaining length from the
/// header and only slices the payload, so the cut-off payload does no harm.
fn topic_part(packet: &[u8]) -> &[u8] {
    let mut at = 1;
    while packet.get(at).is_some_and(|b| b & 0x80 != 0) {
        at += 1;
    }
    let topic_len = packet.get(at + 1..at + 3).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
    &packet[..packet.len().min(at + 3 + topic_len + 2)]
}

/// Reads one whole packet (fixed header and all) from `stream`, keeping what follows in `buf`.
async fn next_packet(stream: &mut (impl AsyncReadExt + Unpin), buf: &mut BytesMut) -> Result<BytesMut, Closed> {
    loop {
        match mqttbytes::check(buf.iter(), MAX_PACKET_BYTES) {
            Ok(header) => return Ok(buf.split_to(header.frame_length())),
            Err(mqttbytes::Error::InsufficientBytes(more)) => {
                buf.reserve(more.max(4096));
                if stream.read_buf(buf).await? == 0 {
                    return Err(Closed::Gone);
                }
            }
            Err(_) => return Err(Closed::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Role {
        Role::Agent("gw-1".into())
    }

    #[test]
    fn agents_write_their_own_topics_and_read_their_config() {
        assert!(may_publish(&agent(), "edgeprobe/v1/agents/gw-1/report"));
        assert!(may_publish(&agent(), "edgeprobe/v1/agents/gw-1/state"));
        assert!(!may_publish(&agent(), "edgeprobe/v1/agents/gw-2/report"));
        assert!(!may_publish(&agent(), "edgeprobe/v1/agents/gw-1/config"));
        assert!(!may_publish(&agent(), "elsewhere"));
        assert!(may_subscribe(&agent(), "edgeprobe/v1/agents/gw-1/config"));
        for filter in
            ["#", "edgeprobe/v1/agents/+/config", "edgeprobe/v1/agents/gw-2/config", "edgeprobe/v1/agents/gw-1/report"]
        {
            assert!(!may_subscribe(&agent(), filter), "{filter}");
        }
    }

    #[test]
    fn the_collector_reads_every_agent_and_writes_configs() {
        let c = Role::Collector;
        assert!(may_subscribe(&c, "$share/edgeprobe-collectors/edgeprobe/v1/agents/+/report"));
        assert!(may_subscribe(&c, "edgeprobe/v1/agents/+/state"));
        assert!(may_subscribe(&c, "edgeprobe/v1/agents/gw-1/report"));
        for filter in ["#", "$share/g/#", "$share//edgeprobe/v1/agents/+/report", "edgeprobe/v1/agents/#", "$SYS/#"] {
            assert!(!may_subscribe(&c, filter), "{filter}");
        }
        assert!(may_publish(&c, "edgeprobe/v1/agents/gw-1/config"));
        assert!(!may_publish(&c, "edgeprobe/v1/agents/+/config"));
        assert!(!may_publish(&c, "edgeprobe/v1/agents/gw-1/report"));
    }

    fn gate() -> Gate {
        let users = [("gw-1", "password1"), ("collector", "password2"), ("bad/name", "password3")];
        Gate {
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            collector: Some("collector".into()),
            secret: "s".into(),
        }
    }

    #[test]
    fn logins_and_wills_are_checked() {
        let connect = |id: &str, login: Option<(&str, &str)>| {
            let mut c = Connect::new(id);
            if let Some((u, p)) = login {
                c.set_login(u, p);
            }
            c
        };
        let g = gate();
        assert_eq!(g.admit(&connect("gw-1", Some(("gw-1", "password1")))), Ok(agent()));
        assert_eq!(g.admit(&connect("c", Some(("collector", "password2")))), Ok(Role::Collector));
        assert_eq!(g.admit(&connect("gw-1", Some(("gw-1", "wrong")))), Err(Denied::Login));
        assert_eq!(g.admit(&connect("gw-1", None)), Err(Denied::Login));
        assert_eq!(g.admit(&connect("gw-#", Some(("gw-1", "password1")))), Err(Denied::Login));
        // A name that cannot be a topic level has no topics to its name.
        assert_eq!(g.admit(&connect("x", Some(("bad/name", "password3")))), Err(Denied::Login));
        let mut will = connect("gw-1", Some(("gw-1", "password1")));
        will.last_will =
            Some(rumqttc::LastWill::new("edgeprobe/v1/agents/gw-2/state", "x", rumqttc::QoS::AtLeastOnce, true));
        assert_eq!(g.admit(&will), Err(Denied::Publish));
        let open = Gate { users: BTreeMap::new(), collector: None, secret: "s".into() };
        assert_eq!(open.admit(&connect("", None)), Ok(Role::Anyone));
    }

    #[test]
    fn a_publish_is_judged_by_its_topic_without_its_payload() {
        let mut out = BytesMut::new();
        let mut p = Publish::new("edgeprobe/v1/agents/gw-2/report", rumqttc::QoS::AtLeastOnce, vec![7u8; 100_000]);
        p.pkid = 9;
        p.write(&mut out).unwrap();
        assert!(matches!(check(&agent(), &out), Err(Closed::Denied(Denied::Publish))));
        let mut out = BytesMut::new();
        Publish::new("edgeprobe/v1/agents/gw-1/report", rumqttc::QoS::AtMostOnce, vec![7u8; 10])
            .write(&mut out)
            .unwrap();
        assert!(check(&agent(), &out).is_ok());
        // Truncated garbage closes the connection; it is not a refusal to count.
        assert!(matches!(check(&agent(), &[0x30, 0x05, 0x00]), Err(Closed::Gone)));
    }
}
