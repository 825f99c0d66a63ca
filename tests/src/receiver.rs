//! A webhook receiver for the delivery tests: a real HTTP server (axum) on a port of its own
//! that keeps every request it is sent, checks its signature, and can be stopped and started
//! again on the same port, as an operator's system that goes down and comes back.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// Whether `X-Edgeprobe-Signature` is the HMAC-SHA256 of `TIMESTAMP.BODY` under the secret.
    pub signed: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

type Log = Arc<Mutex<Vec<Received>>>;

pub struct Receiver {
    pub port: u16,
    secret: String,
    log: Log,
    server: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// The signature a receiver expects, as the README tells receivers to compute it.
pub fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Receiver {
    /// Listens on `port` (0: any free one), checking signatures with `secret`.
    pub fn start(port: u16, secret: &str) -> Receiver {
        let mut r = Receiver { port, secret: secret.to_string(), log: Log::default(), server: None };
        r.up();
        r
    }

    /// Starts answering again (on the same port).
    pub fn up(&mut self) {
        assert!(self.server.is_none(), "already up");
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("bind the receiver's port");
        listener.set_nonblocking(true).unwrap();
        self.port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = (self.log.clone(), self.secret.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(record).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        self.server = Some((stop, thread));
    }

    /// Stops answering: connections are refused until `up`.
    pub fn down(&mut self) {
        if let Some((stop, thread)) = self.server.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn record(
    State((log, secret)): State<(Log, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let headers: BTreeMap<String, String> =
        headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("?").to_string())).collect();
    let timestamp = headers.get("x-edgeprobe-timestamp").cloned().unwrap_or_default();
    let signed = headers.get("x-edgeprobe-signature") == Some(&expected_signature(&secret, &timestamp, &body));
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.lock().unwrap().push(Received { path: uri.path().to_string(), headers, body, signed });
    StatusCode::OK
}
