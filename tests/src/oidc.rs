//! A real OpenID provider for the tests: the npm package `oidc-provider`, started on 127.0.0.1
//! by `oidc/server.mjs` (run `npm ci` in `tests/oidc` first; `make test` does).

use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

#[derive(Debug, Clone, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    pub alg: String,
    /// The private key, PKCS#8 PEM.
    pub pem: String,
}

#[derive(Debug, Deserialize)]
struct Announcement {
    issuer: String,
    client_id: String,
    client_secret: String,
    audience: String,
    keys: Vec<SigningKey>,
}

pub struct OidcProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub audience: String,
    pub keys: Vec<SigningKey>,
    http: reqwest::Client,
    _child: Child,
    _stdin: ChildStdin,
}

impl OidcProvider {
    pub async fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc/server.mjs");
        assert!(
            script.with_file_name("node_modules").join("oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci --prefix tests/oidc` (make test does)"
        );
        let mut child = Command::new("node")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next_line()
            .await
            .expect("read the provider's announcement")
            .expect("the provider exited");
        let a: Announcement = serde_json::from_str(&line).expect("the provider's announcement");
        Self {
            issuer: a.issuer,
            client_id: a.client_id,
            client_secret: a.client_secret,
            audience: a.audience,
            keys: a.keys,
            http: reqwest::Client::new(),
            _child: child,
            _stdin: stdin,
        }
    }

    pub fn key(&self, alg: &str) -> &SigningKey {
        self.keys
            .iter()
            .find(|k| k.alg == alg)
            .expect("a key for the algorithm")
    }

    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// An access token for `account` issued by the provider itself: a JWT signed with `alg`,
    /// or an opaque token when `alg` is `None`.
    pub async fn token(&self, account: &str, alg: Option<&str>, expires_in: u64) -> String {
        let body = match alg {
            Some(alg) => json!({"account": account, "format": "jwt", "alg": alg, "expires_in": expires_in}),
            None => json!({"account": account, "format": "opaque", "expires_in": expires_in}),
        };
        self.mint(body).await
    }

    /// A refresh token for `account` issued by the provider itself (opaque).
    pub async fn refresh_token(&self, account: &str) -> String {
        self.mint(json!({"account": account, "format": "refresh", "expires_in": 300}))
            .await
    }

    async fn mint(&self, body: Value) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/test/token", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["token"].as_str().expect("a token").to_owned()
    }

    /// How many times the JWKS endpoint has been fetched.
    pub async fn jwks_fetches(&self) -> u64 {
        let counters: Value = self
            .http
            .get(format!("{}/test/counters", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        counters["jwks"].as_u64().unwrap()
    }
}
