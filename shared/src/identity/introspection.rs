//! RFC 7662 token introspection, as Keycloak offers it.
//!
//! The function authenticates as a confidential client (HTTP Basic) and posts the token; an
//! answer with `active: false` means the token is invalid. A 401 from the endpoint means the
//! client credentials are wrong: that is the operator's problem, so it is "unavailable".

use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::Value;
use url::Url;

use super::claims::is_expired;
use super::{Identity, IdentityError, TokenValidator, identity_from_claims, unavailable};

pub struct IntrospectionValidator {
    client: reqwest::Client,
    url: Url,
    client_id: String,
    client_secret: String,
}

impl IntrospectionValidator {
    pub fn new(client: reqwest::Client, url: Url, client_id: String, client_secret: String) -> Self {
        Self {
            client,
            url,
            client_id,
            client_secret,
        }
    }
}

#[async_trait]
impl TokenValidator for IntrospectionValidator {
    async fn validate(&self, token: &str) -> Result<Identity, IdentityError> {
        let response = self
            .client
            .post(self.url.clone())
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable("the introspection endpoint", &e))?;
        let status = response.status();
        if !status.is_success() {
            if status == http::StatusCode::UNAUTHORIZED {
                tracing::error!(
                    "the introspection endpoint refused the client credentials: check AUTH_CLIENT_ID and AUTH_CLIENT_SECRET"
                );
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
        let identity = identity_from_claims(&claims)?;
        if is_expired(&identity, SystemTime::now()) {
            return Err(IdentityError::Invalid("the token has expired".into()));
        }
        Ok(identity)
    }
}
