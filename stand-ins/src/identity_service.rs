//! A stand-in for the identity service at `AUTH_API_URL`, on 127.0.0.1.
//!
//! It answers both forms the functions support, on one path:
//! - `GET /user` with `Authorization: Bearer <token>` (the seed specification): 200 with the
//!   claims `{sub, username, roles, groups}`, 401 for an unknown or expired token;
//! - `POST /user` with JSON `{"token": ...}` (the NDP identity service): 200 with the claims,
//!   or 200 with `{"error": ...}` for an unknown or expired token.
//!
//! Tokens are issued for known users with `issue` or `POST /token {"user": ...}`. Faults can be
//! injected (`set_fault`) and every call to `/user` is counted (`calls`, or
//! `GET /stand-in/calls` for the benches).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// What the service does to the next calls of `/user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer 500.
    ServerError,
    /// Wait this long before answering.
    Delay(Duration),
}

struct Issued {
    user: String,
    expires: Option<SystemTime>,
}

struct Inner {
    users: HashMap<String, Value>,
    tokens: Mutex<HashMap<String, Issued>>,
    fault: Mutex<Fault>,
    calls: AtomicUsize,
}

pub struct IdentityService {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

/// The users of the local stack: alice in the allowed group, bob an administrator, eve in no
/// allowed group.
pub fn dev_users() -> Vec<(String, Value)> {
    let user = |name: &str, groups: &[&str], roles: &[&str]| {
        (
            name.to_owned(),
            json!({"sub": format!("{name}-0000-4000-8000-000000000001"), "username": name, "groups": groups, "roles": roles}),
        )
    };
    vec![
        user("alice", &["/ndp_ep/ep-dev"], &["user"]),
        user("bob", &["/ndp_ep/ep-dev", "/ndp_ep/admins"], &["user", "admin"]),
        user("eve", &["/elsewhere"], &["user"]),
    ]
}

/// `count` more users in the allowed group, `user-001` onwards: a workshop's attendees, for
/// load runs.
pub fn workshop_users(count: usize) -> Vec<(String, Value)> {
    (1..=count)
        .map(|i| {
            let name = format!("user-{i:03}");
            let claims = json!({
                "sub": format!("{i:08x}-0000-4000-8000-000000000002"),
                "username": name,
                "groups": ["/ndp_ep/ep-dev"],
                "roles": ["user"],
            });
            (name, claims)
        })
        .collect()
}

impl IdentityService {
    /// Starts on an ephemeral port of 127.0.0.1 with the given users (name, claims).
    pub async fn start(users: Vec<(String, Value)>) -> Self {
        Self::start_on(0, users).await
    }

    pub async fn start_on(port: u16, users: Vec<(String, Value)>) -> Self {
        let inner = Arc::new(Inner {
            users: users.into_iter().collect(),
            tokens: Mutex::new(HashMap::new()),
            fault: Mutex::new(Fault::None),
            calls: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/user", get(user_from_bearer).post(user_from_body))
            .route("/token", post(issue_token))
            .route("/stand-in/calls", get(count_calls))
            .with_state(inner.clone());
        let (addr, task) = crate::listen(port, app, "identity service").await;
        Self { addr, inner, task }
    }

    /// The value for `AUTH_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/user", self.addr)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new token for `user`, valid for `ttl` (or without expiry).
    pub fn issue(&self, user: &str, ttl: Option<Duration>) -> String {
        self.inner.issue(user, ttl).expect("a known user")
    }

    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.inner.fault.lock().unwrap() = fault;
    }

    /// Stops answering: connections are refused from now on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for IdentityService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    fn issue(&self, user: &str, ttl: Option<Duration>) -> Option<String> {
        self.users.get(user)?;
        let token = format!("{user}.{}", uuid::Uuid::new_v4().simple());
        let expires = ttl.map(|ttl| SystemTime::now() + ttl);
        self.tokens.lock().unwrap().insert(
            token.clone(),
            Issued {
                user: user.to_owned(),
                expires,
            },
        );
        Some(token)
    }

    /// The claims for a live token.
    async fn claims(&self, token: &str) -> Result<Value, Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::None => {}
            Fault::ServerError => {
                return Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"detail": "injected failure"})),
                )
                    .into_response());
            }
            Fault::Delay(wait) => tokio::time::sleep(wait).await,
        }
        let tokens = self.tokens.lock().unwrap();
        let issued = tokens.get(token).ok_or_else(|| invalid("unknown token"))?;
        let mut claims = self.users[&issued.user].clone();
        if let Some(expires) = issued.expires {
            if expires <= SystemTime::now() {
                return Err(invalid("token expired"));
            }
            claims["exp"] = json!(expires.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
        }
        Ok(claims)
    }
}

fn invalid(reason: &str) -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"detail": reason}))).into_response()
}

async fn user_from_bearer(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match inner.claims(token).await {
        Ok(claims) => Json(claims).into_response(),
        Err(response) => response,
    }
}

async fn user_from_body(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> Response {
    let token = body.get("token").and_then(Value::as_str).unwrap_or_default();
    match inner.claims(token).await {
        Ok(claims) => Json(claims).into_response(),
        // The NDP identity service answers 200 with an `error` key for a bad token.
        Err(response) if response.status() == StatusCode::UNAUTHORIZED => {
            Json(json!({"error": "Invalid or expired token"})).into_response()
        }
        Err(response) => response,
    }
}

async fn count_calls(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"calls": inner.calls.load(Ordering::SeqCst)}))
}

async fn issue_token(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> Response {
    let user = body.get("user").and_then(Value::as_str).unwrap_or_default();
    let ttl = body.get("ttl_seconds").and_then(Value::as_u64).map(Duration::from_secs);
    match inner.issue(user, ttl) {
        Some(token) => Json(json!({"token": token, "user": user})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"detail": format!("no user {user:?}")})),
        )
            .into_response(),
    }
}
