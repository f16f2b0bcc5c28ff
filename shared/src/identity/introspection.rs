//! RFC 7662 token introspection, as Keycloak offers it.
//!
//! The function authenticates as a confidential client (HTTP Basic) and posts the token; an
//! answer with `active: false` means the token is invalid, and so does an answer that does not
//! name an access token (`token_type` or Keycloak's `typ` of `Bearer`): refresh, offline and ID
//! tokens are refused. A 401 from the endpoint means the
//! client credentials are wrong: that is the operator's problem, so it is "unavailable".
//!
//! The client secret is given as such (`AUTH_CLIENT_SECRET`, for local runs) or, on AWS, named
//! in Secrets Manager (`AUTH_CLIENT_SECRET_ID`): then it is fetched on first use, kept, and
//! fetched again after the endpoint refused it (the secret was rotated).

use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::RwLock;
use url::Url;

use crate::aws;

use super::claims::{is_expired, require_access_token};
use super::{Identity, IdentityError, TokenValidator, identity_from_claims, unavailable};

/// Where the client secret comes from. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientSecret {
    Plain(String),
    /// The id (name or ARN) of a Secrets Manager secret whose string is the client secret.
    SecretsManager(String),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("Plain(<redacted>)"),
            Self::SecretsManager(id) => f.debug_tuple("SecretsManager").field(id).finish(),
        }
    }
}

pub struct IntrospectionValidator {
    client: reqwest::Client,
    url: Url,
    client_id: String,
    source: ClientSecret,
    fetched: RwLock<Option<String>>,
}

impl IntrospectionValidator {
    pub fn new(client: reqwest::Client, url: Url, client_id: String, source: ClientSecret) -> Self {
        Self {
            client,
            url,
            client_id,
            source,
            fetched: RwLock::new(None),
        }
    }

    async fn secret(&self) -> Result<String, IdentityError> {
        let id = match &self.source {
            ClientSecret::Plain(secret) => return Ok(secret.clone()),
            ClientSecret::SecretsManager(id) => id,
        };
        if let Some(secret) = self.fetched.read().await.clone() {
            return Ok(secret);
        }
        let fetch = async { aws::secret_string(aws::own().await?, id).await };
        let answer = fetch.await.map_err(|e| {
            tracing::error!(secret_id = %id, error = %e, "cannot read the introspection client secret (AUTH_CLIENT_SECRET_ID)");
            IdentityError::Unavailable("the client secret cannot be read".into())
        })?;
        let secret = answer.filter(|s| !s.is_empty()).ok_or_else(|| {
            tracing::error!(secret_id = %id, "the introspection client secret holds no string");
            IdentityError::Unavailable("the client secret is empty".into())
        })?;
        *self.fetched.write().await = Some(secret.clone());
        Ok(secret)
    }
}

#[async_trait]
impl TokenValidator for IntrospectionValidator {
    async fn validate(&self, token: &str) -> Result<Identity, IdentityError> {
        let secret = self.secret().await?;
        let response = self
            .client
            .post(self.url.clone())
            .basic_auth(&self.client_id, Some(&secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable("the introspection endpoint", &e))?;
        let status = response.status();
        if !status.is_success() {
            if status == http::StatusCode::UNAUTHORIZED {
                tracing::error!(
                    "the introspection endpoint refused the client credentials: check AUTH_CLIENT_ID and the secret"
                );
                *self.fetched.write().await = None;
            }
            return Err(IdentityError::Unavailable(format!(
                "the introspection endpoint answered {status}"
            )));
        }
        let claims: Value = response
            .json()
            .await
            .map_err(|e| unavailable("the introspection endpoint", &e))?;
        if claims.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(IdentityError::Invalid("the token is not active".into()));
        }
        require_access_token(&claims, false)?;
        let identity = identity_from_claims(&claims)?;
        if is_expired(&identity, SystemTime::now()) {
            return Err(IdentityError::Invalid("the token has expired".into()));
        }
        Ok(identity)
    }
}
