//! Login for the console, the API and `/metrics`: HTTP basic auth for people (a browser asks
//! once and resends it, server-sent events included) and bearer tokens for scripts. Without
//! users or tokens in `[http.auth]` everything is open, as on a single box bound to localhost.
//! Read-only logins see everything; only operators change anything.
//!
//! Passwords may be given as bcrypt hashes. A bcrypt check takes tens of milliseconds on
//! purpose, and a browser sends the password with every request, so a login once proven is
//! remembered (by a digest, in a bounded set) and checks run one at a time off the runtime.
//!
//! Guessing is throttled ([`Throttle`]): per client address and per user name, failures past
//! a few make the next try wait, doubling, and many lock out for a while; a client address
//! checks one login at a time, so a flood from a few addresses holds a few places in the
//! queue for bcrypt, not all of it, and a real login waits behind at most one check per
//! guessing address.

use crate::config::{AuthConfig, Login, Role, Token};
use crate::metrics::Metrics;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the login check holds: the configured logins and tokens, the logins already proven, the
/// throttle, and the counters it keeps.
pub struct Logins {
    pub config: AuthConfig,
    pub verified: Verified,
    pub throttle: Throttle,
    pub metrics: Arc<Metrics>,
}

impl Logins {
    pub fn new(config: AuthConfig, metrics: Arc<Metrics>) -> Logins {
        Logins { config, verified: Verified::default(), throttle: Throttle::default(), metrics }
    }
}

/// Who made a request, put in its extensions by [`require`].
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// False when no login is configured (everyone is an operator then).
    pub authenticated: bool,
}

impl User {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// Compares in time that does not depend on where the strings differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the Authorization header claims.
enum Claim<'a> {
    Proven(User),
    /// A user with a hashed password, not yet checked.
    Unproven(&'a Login, String),
    /// No such login: the password is still checked against some user's hash, and the answer
    /// thrown away, so the time taken does not say which names exist.
    Decoy(&'a str, String),
    Nobody,
}

fn user(name: &str, role: Role) -> User {
    User { name: name.to_string(), role, authenticated: true }
}

fn claim<'a>(auth: &'a AuthConfig, headers: &HeaderMap) -> Claim<'a> {
    let Some((scheme, credentials)) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.split_once(' '))
    else {
        return Claim::Nobody;
    };
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        // Every token is compared, so the time taken does not say which one came close.
        let digest = format!("{:x}", Sha256::digest(credentials.as_bytes()));
        let matches = |t: &Token| match (&t.token, &t.token_sha256) {
            (Some(plain), _) => same(plain, credentials),
            (None, Some(hash)) => same(&hash.to_ascii_lowercase(), &digest),
            (None, None) => false,
        };
        let found = auth.tokens.iter().fold(None, |hit, t| if matches(t) { Some(t) } else { hit });
        return found.map_or(Claim::Nobody, |t| Claim::Proven(user(&t.name, t.role)));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Claim::Nobody;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok();
    let Some((name, password)) = decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok()?.split_once(':')) else {
        return Claim::Nobody;
    };
    let mut found = Claim::Nobody;
    for u in &auth.users {
        match (&u.password, &u.password_hash) {
            (Some(p), _) if same(p, password) && u.name == name => found = Claim::Proven(user(&u.name, u.role)),
            (None, Some(_)) if u.name == name => found = Claim::Unproven(u, password.to_string()),
            _ => {}
        }
    }
    if let Claim::Nobody = found {
        if let Some(hash) = auth.users.iter().find_map(|u| u.password_hash.as_deref()) {
            return Claim::Decoy(hash, password.to_string());
        }
    }
    found
}

/// Logins proven by their bcrypt hash.
pub struct Verified {
    proven: Mutex<HashSet<[u8; 32]>>,
    /// One check at a time, so a flood of wrong passwords costs one core, not all of them.
    turn: tokio::sync::Semaphore,
}

/// Proven logins remembered; past this the set starts over.
const REMEMBERED: usize = 1024;

impl Default for Verified {
    fn default() -> Self {
        Verified { proven: Mutex::new(HashSet::new()), turn: tokio::sync::Semaphore::new(1) }
    }
}

impl Verified {
    /// A bcrypt check, one at a time, off the runtime.
    async fn bcrypt(&self, password: String, hash: String) -> bool {
        let Ok(_turn) = self.turn.acquire().await else { return false };
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await.unwrap_or(false)
    }

    async fn check(&self, login: &Login, password: String) -> bool {
        let Some(hash) = login.password_hash.clone() else { return false };
        let key: [u8; 32] = Sha256::new()
            .chain_update(&login.name)
            .chain_update([0])
            .chain_update(&password)
            .chain_update([0])
            .chain_update(&hash)
            .finalize()
            .into();
        if self.proven.lock().is_ok_and(|p| p.contains(&key)) {
            return true;
        }
        let ok = self.bcrypt(password, hash).await;
        if ok {
            if let Ok(mut proven) = self.proven.lock() {
                if proven.len() >= REMEMBERED {
                    proven.clear();
                }
                proven.insert(key);
            }
        }
        ok
    }
}

/// The user the Authorization header proves, if any.
pub async fn identify(auth: &AuthConfig, verified: &Verified, headers: &HeaderMap) -> Option<User> {
    match claim(auth, headers) {
        Claim::Proven(u) => Some(u),
        Claim::Unproven(login, password) => {
            verified.check(login, password).await.then(|| user(&login.name, login.role))
        }
        Claim::Decoy(hash, password) => {
            let _ = verified.bcrypt(password, hash.to_string()).await;
            None
        }
        Claim::Nobody => None,
    }
}

/// Failures a client address or user name may have before tries wait.
const FREE_FAILURES: u32 = 5;
/// Failures that lock an address or name out for [`LOCKOUT`].
const LOCK_FAILURES: u32 = 20;
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// The longest wait between tries before the lockout.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Records kept of each kind; past this the oldest are forgotten.
const RECORDS: usize = 4096;
/// Client addresses that check a login at once are spread over this many queues.
const QUEUES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Who {
    Address(IpAddr),
    User(String),
    /// An address that has proven this user's login: the user's own lockout spares it.
    Known(IpAddr, String),
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Instant,
}

/// Failed logins by client address and user name (see the module's notes).
pub struct Throttle {
    records: Mutex<HashMap<Who, Record>>,
    queues: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle { records: Mutex::new(HashMap::new()), queues: (0..QUEUES).map(|_| Default::default()).collect() }
    }
}

impl Throttle {
    /// How long `address` must wait before trying `user`'s login (or any, without a name).
    fn wait(&self, address: IpAddr, user: Option<&str>, now: Instant) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let known = user.is_some_and(|u| records.contains_key(&Who::Known(address, u.to_string())));
        let mut who = vec![Who::Address(address)];
        who.extend(user.filter(|_| !known).map(|u| Who::User(u.to_string())));
        who.iter()
            .filter_map(|w| records.get(w))
            .map(|r| r.blocked_until.saturating_duration_since(now))
            .max()
            .filter(|d| !d.is_zero())
    }

    fn failed(&self, address: IpAddr, user: Option<&str>, now: Instant) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for who in std::iter::once(Who::Address(address)).chain(user.map(|u| Who::User(u.to_string()))) {
            if !records.contains_key(&who) {
                make_room(&mut records, now);
            }
            let r = records.entry(who).or_insert(Record { failures: 0, last: now, blocked_until: now });
            if now.duration_since(r.last) > LOCKOUT {
                r.failures = 0;
            }
            r.failures += 1;
            r.last = now;
            r.blocked_until = match r.failures {
                n if n >= LOCK_FAILURES => now + LOCKOUT,
                n if n > FREE_FAILURES => {
                    now + MAX_BACKOFF.min(Duration::from_secs(1 << (n - FREE_FAILURES - 1).min(16)))
                }
                _ => now,
            };
        }
    }

    fn succeeded(&self, address: IpAddr, user: Option<&str>, now: Instant) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(&Who::Address(address));
        if let Some(u) = user {
            make_room(&mut records, now);
            records.insert(Who::Known(address, u.to_string()), Record { failures: 0, last: now, blocked_until: now });
        }
    }

    /// The queue `address` checks its logins in, one at a time.
    async fn turn(&self, address: IpAddr) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&address, &mut h);
        self.queues[std::hash::Hasher::finish(&h) as usize % QUEUES].lock().await
    }
}

/// Forgets records past their lockout, then, if still full, the oldest quarter: one pass now
/// and then, not one per failure.
fn make_room(records: &mut HashMap<Who, Record>, now: Instant) {
    if records.len() < RECORDS * 3 {
        return;
    }
    records.retain(|_, r| now.duration_since(r.last) <= LOCKOUT);
    if records.len() >= RECORDS * 3 {
        let mut lasts: Vec<Instant> = records.values().map(|r| r.last).collect();
        let (_, cutoff, _) = lasts.select_nth_unstable(records.len() / 4);
        let cutoff = *cutoff;
        records.retain(|_, r| r.last > cutoff);
    }
}

/// The user name of a basic-auth header, for throttling.
fn basic_name(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials.trim()).ok()?;
    let (name, _) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(name.to_string())
}

/// Middleware: with a login configured, a request without valid credentials gets 401, and a
/// client that guessed too often 429 until its wait is over.
pub async fn require(State(logins): State<Arc<Logins>>, mut request: Request, next: Next) -> Response {
    let auth = &logins.config;
    let user = if auth.enabled() {
        let headers = request.headers();
        let address = request.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let address = address.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let name = basic_name(headers);
        let tried = headers.contains_key(header::AUTHORIZATION);
        let throttle = &logins.throttle;
        let _turn = if tried { Some(throttle.turn(address).await) } else { None };
        if let Some(wait) = tried.then(|| throttle.wait(address, name.as_deref(), Instant::now())).flatten() {
            logins.metrics.logins_throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let secs = wait.as_secs().max(1).to_string();
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs)], "too many failed logins\n")
                .into_response();
        }
        match identify(auth, &logins.verified, headers).await {
            Some(user) => {
                throttle.succeeded(address, name.as_deref(), Instant::now());
                user
            }
            None => {
                if tried {
                    throttle.failed(address, name.as_deref(), Instant::now());
                }
                logins.metrics.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Basic realm=\"edgeprobe\", charset=\"UTF-8\"")],
                    "login required\n",
                )
                    .into_response();
            }
        }
    } else {
        User { name: "operator".into(), role: Role::Operator, authenticated: false }
    };
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// A bcrypt hash of `password` for `[http.auth] users`.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    anyhow::ensure!(password.len() >= 8, "passwords must be at least 8 characters");
    Ok(bcrypt::hash(password, bcrypt::DEFAULT_COST)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Login, Token};

    fn auth() -> AuthConfig {
        let hashed = bcrypt::hash("hashed-pass", 4).unwrap();
        AuthConfig {
            users: vec![
                Login {
                    name: "alice".into(),
                    password: Some("operator-pass".into()),
                    password_hash: None,
                    role: Role::Operator,
                },
                Login {
                    name: "bob".into(),
                    password: Some("read-only-pass".into()),
                    password_hash: None,
                    role: Role::Read,
                },
                Login { name: "carol".into(), password: None, password_hash: Some(hashed), role: Role::Operator },
            ],
            tokens: vec![
                Token {
                    name: "prometheus".into(),
                    token: Some("0123456789abcdef-token".into()),
                    token_sha256: None,
                    role: Role::Read,
                },
                Token {
                    name: "deploy".into(),
                    token: None,
                    // Upper case, as some tools print it.
                    token_sha256: Some(format!("{:X}", Sha256::digest(b"hashed-token-0123456789"))),
                    role: Role::Operator,
                },
            ],
        }
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        with(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
    }

    #[tokio::test]
    async fn logins_and_tokens_map_to_their_roles_and_nothing_else_passes() {
        let a = auth();
        let v = Verified::default();
        let id = |h: HeaderMap| {
            let (a, v) = (&a, &v);
            async move { identify(a, v, &h).await }
        };
        assert_eq!(id(basic("alice", "operator-pass")).await.unwrap().role, Role::Operator);
        assert_eq!(id(basic("bob", "read-only-pass")).await.unwrap().role, Role::Read);
        assert_eq!(id(with("Bearer 0123456789abcdef-token")).await.unwrap().name, "prometheus");
        assert!(id(basic("alice", "read-only-pass")).await.is_none(), "another user's password");
        assert!(id(basic("alice", "operator-pas")).await.is_none());
        assert!(id(with("Bearer 0123456789abcdef-toke")).await.is_none());
        assert_eq!(id(with("Bearer hashed-token-0123456789")).await.unwrap().role, Role::Operator);
        assert!(id(with("Bearer hashed-token-012345678")).await.is_none());
        let the_hash = a.tokens[1].token_sha256.clone().unwrap();
        assert!(id(with(&format!("Bearer {the_hash}"))).await.is_none(), "the hash is not the token");
        assert!(id(with("Basic !!!")).await.is_none());
        assert!(id(with("Digest x")).await.is_none());
        assert!(id(HeaderMap::new()).await.is_none());
        // A hashed password: right, wrong, and right again once remembered; never another's.
        assert!(id(basic("carol", "hashed-pas")).await.is_none());
        assert_eq!(id(basic("carol", "hashed-pass")).await.unwrap().name, "carol");
        assert_eq!(v.proven.lock().unwrap().len(), 1);
        assert_eq!(id(basic("carol", "hashed-pass")).await.unwrap().role, Role::Operator);
        assert!(id(basic("carol", "operator-pass")).await.is_none());
        assert!(id(basic("alice", "hashed-pass")).await.is_none());
        assert_eq!(v.proven.lock().unwrap().len(), 1, "only proven logins are remembered");
    }

    #[test]
    fn failed_logins_wait_longer_then_lock_out_and_a_known_address_keeps_its_user() {
        let t = Throttle::default();
        let (guesser, operator, other) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), [10, 0, 0, 3].into());
        let start = Instant::now();
        t.succeeded(operator, Some("alice"), start);
        let mut waits = Vec::new();
        for i in 0..LOCK_FAILURES {
            let now = start + Duration::from_secs(u64::from(i));
            waits.push(t.wait(guesser, Some("alice"), now).map_or(0, |d| d.as_secs()));
            t.failed(guesser, Some("alice"), now);
        }
        // Free tries, then waits that double, each counted from the failure before.
        assert_eq!(&waits[..7], &[0, 0, 0, 0, 0, 0, 0]);
        let now = start + Duration::from_secs(u64::from(LOCK_FAILURES));
        let locked = t.wait(guesser, Some("alice"), now).unwrap();
        assert!(locked > Duration::from_secs(14 * 60), "{locked:?}");
        // The name is locked for everyone but the address that proved it before.
        assert!(t.wait(other, Some("alice"), now).is_some());
        assert!(t.wait(other, Some("bob"), now).is_none());
        assert!(t.wait(operator, Some("alice"), now).is_none());
        // The lockout ends.
        assert!(t.wait(guesser, Some("alice"), now + LOCKOUT).is_none());

        let t = Throttle::default();
        let at = |secs: u64| start + Duration::from_secs(secs);
        for _ in 0..=FREE_FAILURES {
            t.failed(guesser, None, at(0));
        }
        assert_eq!(t.wait(guesser, None, at(0)), Some(Duration::from_secs(1)));
        t.failed(guesser, None, at(1));
        assert_eq!(t.wait(guesser, None, at(1)), Some(Duration::from_secs(2)));
        t.failed(guesser, None, at(3));
        assert_eq!(t.wait(guesser, None, at(3)), Some(Duration::from_secs(4)));
        t.succeeded(guesser, None, at(7));
        assert_eq!(t.wait(guesser, None, at(7)), None, "a success clears the address");
    }

    #[test]
    fn throttle_records_are_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..20_000u32 {
            t.failed(IpAddr::from(i.to_be_bytes()), Some(&format!("user-{i}")), now);
        }
        assert!(t.records.lock().unwrap().len() <= RECORDS * 3);
    }

    #[test]
    fn a_hashed_password_verifies_and_is_checked_for_length() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$2b$12$"), "{h}");
        assert!(bcrypt::verify("correct horse", &h).unwrap());
        assert!(!bcrypt::verify("correct hors", &h).unwrap());
        assert!(hash_password("short").is_err());
    }
}
