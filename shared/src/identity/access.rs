//! Who may call: the caller's token validated, then the group policy applied.

use super::groups::GroupPolicy;
use super::{Authenticator, Identity, IdentityError, IdentitySettings};
use crate::config::{ConfigError, Vars};

/// Why a caller was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The token was refused, or could not be checked.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The caller is in no allowed group.
    #[error("the caller is in no allowed group")]
    NotAllowed,
    /// The route is for administrators, and the caller is in no admin group.
    #[error("the caller is in no admin group")]
    NotAdmin,
}

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

    /// The caller holding `token`, authenticated and allowed by the group policy. The caller's
    /// `sub` is recorded on the request's log span.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AccessError> {
        let identity = self
            .authenticator
            .authenticate(token)
            .await
            .inspect_err(|err| match err {
                IdentityError::Invalid(reason) => tracing::info!(%reason, "caller refused: invalid credentials"),
                IdentityError::Unavailable(reason) => tracing::warn!(%reason, "identity provider unavailable"),
            })?;
        tracing::Span::current().record("sub", identity.sub.as_str());
        if !self.policy.allows(&identity) {
            tracing::info!("caller is in no allowed group");
            return Err(AccessError::NotAllowed);
        }
        Ok(identity)
    }

    /// Admits `identity` to the administrators' tier (`ADMIN_GROUP_NAMES`), or refuses it.
    pub fn require_admin(&self, identity: &Identity) -> Result<(), AccessError> {
        if !self.policy.is_admin(identity) {
            tracing::info!("caller is in no admin group");
            return Err(AccessError::NotAdmin);
        }
        Ok(())
    }
}
