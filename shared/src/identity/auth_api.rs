//! The identity service at `AUTH_API_URL`.
//!
//! `GET` (the seed specification) sends `Authorization: Bearer <token>`; `POST` (the NDP
//! identity service) sends JSON `{"token": "<token>"}`. Both answer the caller's claims; a 200
//! carrying an `error` key, a 400, 401, 403 or 422 mean the token is invalid.

use std::str::FromStr;

use async_trait::async_trait;
use http::StatusCode;
use serde_json::Value;
use url::Url;

use super::{Identity, IdentityError, TokenValidator, identity_from_claims, unavailable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthApiMethod {
    Get,
    Post,
}

impl FromStr for AuthApiMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            _ => Err("expected GET or POST".into()),
        }
    }
}

pub struct AuthApiValidator {
    client: reqwest::Client,
    url: Url,
    method: AuthApiMethod,
}

impl AuthApiValidator {
    pub fn new(client: reqwest::Client, url: Url, method: AuthApiMethod) -> Self {
        Self { client, url, method }
    }
}

#[async_trait]
impl TokenValidator for AuthApiValidator {
    async fn validate(&self, token: &str) -> Result<Identity, IdentityError> {
        let request = match self.method {
            AuthApiMethod::Get => self.client.get(self.url.clone()).bearer_auth(token),
            AuthApiMethod::Post => self
                .client
                .post(self.url.clone())
                .json(&serde_json::json!({ "token": token })),
        };
        let response = request
            .send()
            .await
            .map_err(|e| unavailable("the identity service", &e))?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::UNPROCESSABLE_ENTITY => {
                return Err(IdentityError::Invalid("the identity service rejected the token".into()));
            }
            _ => {
                return Err(IdentityError::Unavailable(format!(
                    "the identity service answered {status}"
                )));
            }
        }
        let claims: Value = response
            .json()
            .await
            .map_err(|e| unavailable("the identity service", &e))?;
        if !claims.is_object() {
            return Err(IdentityError::Unavailable(
                "the identity service answered a non-object".into(),
            ));
        }
        if claims.get("error").is_some_and(|e| !e.is_null()) {
            return Err(IdentityError::Invalid("the identity service rejected the token".into()));
        }
        identity_from_claims(&claims)
    }
}
