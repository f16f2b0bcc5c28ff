//! A real Keycloak for the tests (scripts/keycloak): started once per test binary, at the first
//! test that asks for it, with the realms of `tests/keycloak/`; it stops when the binary ends
//! (the script's watchdog). The realms' conventions: a user's password is `<user>-password`, a
//! confidential client's secret `<client>-test-secret`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

/// What scripts/keycloak exits with when Java or the download is missing.
const MISSING: i32 = 3;

pub struct Keycloak {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    admin_password: String,
    _script: Child,
}

/// The tokens of a grant: an access token, and a refresh and an ID token when the grant gives
/// them.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

static SHARED: OnceLock<Option<Keycloak>> = OnceLock::new();

impl Keycloak {
    /// The binary's Keycloak, started at the first call. `None` when this machine lacks Java or
    /// the download, outside CI; with `CI=true`, that is a failure.
    pub fn shared() -> Option<&'static Keycloak> {
        SHARED.get_or_init(Self::start).as_ref()
    }

    fn start() -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let mut script = Command::new(root.join("scripts/keycloak"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("scripts/keycloak starts");
        let mut lines = BufReader::new(script.stdout.take().expect("its output")).lines();
        let ready: Value = loop {
            match lines.next() {
                Some(line) => {
                    if let Ok(ready) = serde_json::from_str::<Value>(&line.expect("a line")) {
                        break ready;
                    }
                }
                None => {
                    let status = script.wait().expect("scripts/keycloak ends");
                    if status.code() == Some(MISSING) && std::env::var_os("CI").is_none() {
                        eprintln!("skipped: Keycloak cannot run here (see above)");
                        return None;
                    }
                    panic!("scripts/keycloak ended before its ready line ({status}); see its output above");
                }
            }
        };
        Some(Self {
            url: ready["ready"].as_str().expect("its URL").to_owned(),
            admin_password: std::fs::read_to_string(ready["admin"]["password_file"].as_str().expect("its file"))
                .expect("the admin's password"),
            _script: script,
        })
    }

    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.url)
    }

    /// An endpoint of a realm's OpenID Connect protocol: `token`, `userinfo`,
    /// `token/introspect`, `logout`, `certs`.
    pub fn endpoint(&self, realm: &str, path: &str) -> String {
        format!("{}/protocol/openid-connect/{path}", self.issuer(realm))
    }

    /// A password grant for `user` on the public client `client`, asking for `scope`.
    pub async fn password_grant(&self, realm: &str, client: &str, user: &str, scope: &str) -> Tokens {
        self.password_grant_at(&self.endpoint(realm, "token"), client, user, scope)
            .await
    }

    /// A password grant through another name of this Keycloak (`localhost` for `127.0.0.1`): its
    /// tokens name that issuer, signed with the realm's same keys.
    pub async fn password_grant_as_localhost(&self, user: &str) -> Tokens {
        let url = self.endpoint("ndp", "token").replacen("127.0.0.1", "localhost", 1);
        self.password_grant_at(&url, "ndp-tests", user, "openid").await
    }

    async fn password_grant_at(&self, url: &str, client: &str, user: &str, scope: &str) -> Tokens {
        let password = format!("{user}-password");
        let form = [
            ("grant_type", "password"),
            ("client_id", client),
            ("username", user),
            ("password", &password),
            ("scope", scope),
        ];
        self.grant_at(url, &form).await
    }

    /// A client-credentials grant: the access token of the confidential `client`'s service
    /// account, as a machine user gets one.
    pub async fn client_credentials(&self, client: &str) -> String {
        self.client_credentials_with(client, &format!("{client}-test-secret"))
            .await
    }

    pub async fn client_credentials_with(&self, client: &str, secret: &str) -> String {
        self.grant(
            "ndp",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client),
                ("client_secret", secret),
            ],
        )
        .await
        .access_token
    }

    async fn grant(&self, realm: &str, form: &[(&str, &str)]) -> Tokens {
        self.grant_at(&self.endpoint(realm, "token"), form).await
    }

    async fn grant_at(&self, url: &str, form: &[(&str, &str)]) -> Tokens {
        let answer = reqwest::Client::new()
            .post(url)
            .form(form)
            .send()
            .await
            .expect("Keycloak answers");
        let status = answer.status();
        let body: Value = answer.json().await.expect("a JSON answer");
        assert!(status.is_success(), "the grant was refused ({status}): {body}");
        serde_json::from_value(body).expect("tokens")
    }

    /// The administrators' API of a realm, for a test that changes it.
    pub async fn admin(&self, realm: &str) -> Admin {
        let token = self
            .grant(
                "master",
                &[
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", "admin"),
                    ("password", &self.admin_password),
                ],
            )
            .await
            .access_token;
        Admin {
            base: format!("{}/admin/realms/{realm}", self.url),
            token,
            http: reqwest::Client::new(),
        }
    }
}

pub struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("Keycloak answers");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn user_id(&self, username: &str) -> String {
        let found = self
            .call(
                reqwest::Method::GET,
                &format!("/users?exact=true&username={username}"),
                None,
            )
            .await;
        found[0]["id"].as_str().expect("the user exists").to_owned()
    }

    /// Disables (or enables again) a user, as an administrator does in the console.
    pub async fn set_enabled(&self, username: &str, enabled: bool) {
        let id = self.user_id(username).await;
        self.call(
            reqwest::Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"enabled": enabled})),
        )
        .await;
    }

    /// Ends every session of a user ("Sign out" in the console).
    pub async fn log_out(&self, username: &str) {
        let id = self.user_id(username).await;
        self.call(reqwest::Method::POST, &format!("/users/{id}/logout"), None)
            .await;
    }

    /// A partial import, as `kcadm.sh create partialImport -f FILE` makes it.
    pub async fn partial_import(&self, document: Value) {
        self.call(reqwest::Method::POST, "/partialImport", Some(document)).await;
    }

    /// A confidential client's secret, as the console's Credentials tab shows it.
    pub async fn client_secret(&self, client_id: &str) -> String {
        let found = self
            .call(reqwest::Method::GET, &format!("/clients?clientId={client_id}"), None)
            .await;
        let id = found[0]["id"].as_str().expect("the client exists");
        let secret = self
            .call(reqwest::Method::GET, &format!("/clients/{id}/client-secret"), None)
            .await;
        secret["value"].as_str().expect("its secret").to_owned()
    }

    /// Rotates the realm's signing key: a new RSA key of a higher priority signs from now on;
    /// the old one stays published, as Keycloak's rotation keeps it until it is removed.
    pub async fn rotate_signing_key(&self, priority: u32) {
        let realm = self.call(reqwest::Method::GET, "", None).await;
        let priority = priority.to_string();
        self.call(
            reqwest::Method::POST,
            "/components",
            Some(json!({
                "name": format!("rotated-{priority}"),
                "providerId": "rsa-generated",
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": realm["id"],
                "config": {"priority": [priority], "active": ["true"], "enabled": ["true"], "algorithm": ["RS256"]}
            })),
        )
        .await;
    }
}

/// An identity service in front of Keycloak, as the NDP deployments run one: `POST /` with
/// `{"token": ...}` asks the realm's userinfo endpoint and answers its claims, or 200 with an
/// `error` key for a token Keycloak refuses. Serves on 127.0.0.1 until the test's runtime ends.
pub async fn identity_service(userinfo: String) -> String {
    async fn check(State(userinfo): State<String>, Json(body): Json<Value>) -> Json<Value> {
        let token = body["token"].as_str().unwrap_or_default();
        let answer = reqwest::Client::new()
            .get(&userinfo)
            .bearer_auth(token)
            .send()
            .await
            .expect("Keycloak answers");
        if answer.status().is_success() {
            Json(answer.json().await.expect("userinfo's claims"))
        } else {
            Json(json!({"error": "invalid token"}))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/", axum::routing::post(check))
        .with_state(userinfo);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
