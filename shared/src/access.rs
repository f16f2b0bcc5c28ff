//! Who may call: the caller's token validated, then the group policy applied.

use std::time::Duration;

use lambda_http::Request;

use crate::config::{ConfigError, Vars};
use crate::error::ApiError;
use crate::groups::GroupPolicy;
use crate::identity::{Authenticator, Identity, IdentityError, IdentitySettings};
use crate::request;

/// How long a caller is asked to wait when the identity provider is unavailable.
const IDENTITY_RETRY_AFTER: Duration = Duration::from_secs(5);

pub struct Access {
    authenticator: Authenticator,
    policy: GroupPolicy,
}

impl Access {
    pub fn new(authenticator: Authenticator, policy: GroupPolicy) -> Self {
        Self { authenticator, policy }
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self::new(
            IdentitySettings::from_vars(vars)?.authenticator()?,
            GroupPolicy::from_vars(vars)?,
        ))
    }

    pub fn policy(&self) -> &GroupPolicy {
        &self.policy
    }

    /// The caller of `req`, authenticated (401/503) and allowed by the group policy (403).
    pub async fn caller(&self, req: &Request) -> Result<Identity, ApiError> {
        self.authenticate(&request::token(req)?).await
    }

    /// The caller holding `token`, authenticated (401/503) and allowed by the group policy
    /// (403). The caller's `sub` is recorded on the request's log span.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, ApiError> {
        let identity = self.authenticator.authenticate(token).await.map_err(|err| match err {
            IdentityError::Invalid(reason) => {
                tracing::info!(%reason, "caller refused: invalid credentials");
                ApiError::unauthorized("invalid_token", format!("The token was refused: {reason}."))
            }
            IdentityError::Unavailable(reason) => {
                tracing::warn!(%reason, "identity provider unavailable");
                ApiError::unavailable(
                    "identity_unavailable",
                    "The identity service cannot be reached right now. Try again shortly.",
                    IDENTITY_RETRY_AFTER,
                )
            }
        })?;
        tracing::Span::current().record("sub", identity.sub.as_str());
        if !self.policy.allows(&identity) {
            tracing::info!("caller is in no allowed group");
            return Err(ApiError::forbidden(
                "You are not a member of a group allowed to use this service.",
            ));
        }
        Ok(identity)
    }
}
