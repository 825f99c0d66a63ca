//! Login for the console, the API and `/metrics`: HTTP basic auth for people (a browser asks
//! once and resends it, server-sent events included) and bearer tokens for scripts. Without
//! users or tokens in `[http.auth]` everything is open, as on a single box bound to localhost.
//! Read-only logins see everything; only operators change anything.

use crate::api::ApiState;
use crate::config::{AuthConfig, Role};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::sync::Arc;

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
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user the Authorization header proves, if any.
pub fn identify(auth: &AuthConfig, headers: &HeaderMap) -> Option<User> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        // Every token is compared, so the time taken does not say which one came close.
        let found = auth.tokens.iter().fold(None, |hit, t| if same(&t.token, credentials) { Some(t) } else { hit });
        return found.map(|t| User { name: t.name.clone(), role: t.role, authenticated: true });
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    let found = auth.users.iter().fold(None, |hit, u| {
        let ok = same(&u.password, password) && u.name == name;
        if ok { Some(u) } else { hit }
    });
    found.map(|u| User { name: u.name.clone(), role: u.role, authenticated: true })
}

/// Middleware: with a login configured, a request without valid credentials gets 401.
pub async fn require(State(state): State<Arc<ApiState>>, mut request: Request, next: Next) -> Response {
    let auth = &state.config.http.auth;
    let user = if auth.enabled() {
        match identify(auth, request.headers()) {
            Some(user) => user,
            None => {
                state.metrics.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Login, Token};

    fn auth() -> AuthConfig {
        AuthConfig {
            users: vec![
                Login { name: "alice".into(), password: "operator-pass".into(), role: Role::Operator },
                Login { name: "bob".into(), password: "read-only-pass".into(), role: Role::Read },
            ],
            tokens: vec![Token { name: "prometheus".into(), token: "0123456789abcdef-token".into(), role: Role::Read }],
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

    #[test]
    fn logins_and_tokens_map_to_their_roles_and_nothing_else_passes() {
        let a = auth();
        assert_eq!(identify(&a, &basic("alice", "operator-pass")).unwrap().role, Role::Operator);
        assert_eq!(identify(&a, &basic("bob", "read-only-pass")).unwrap().role, Role::Read);
        assert_eq!(identify(&a, &with("Bearer 0123456789abcdef-token")).unwrap().name, "prometheus");
        assert!(identify(&a, &basic("alice", "read-only-pass")).is_none(), "another user's password");
        assert!(identify(&a, &basic("alice", "operator-pas")).is_none());
        assert!(identify(&a, &with("Bearer 0123456789abcdef-toke")).is_none());
        assert!(identify(&a, &with("Basic !!!")).is_none());
        assert!(identify(&a, &with("Digest x")).is_none());
        assert!(identify(&a, &HeaderMap::new()).is_none());
    }
}
