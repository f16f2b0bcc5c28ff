//! The claim: one ConfigMap per caller, `rexec-server`, saying what the server is built from
//! and which generation runs. Its keys, its builder and its reader are here together.
//!
//! Creating the claim is the lock of a first spawn; replacing it with its `resourceVersion` is
//! the lock of a replacement. Its annotations hold the digest, the generation, the interpreter and the lines, which is what
//! [`Claim::read`] gives back, and once set, why the generation failed or that it was
//! terminated: what a person must still be told after the pod is gone.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use super::error::ServerError;
use super::naming::{MANAGED_BY, MANAGER, OWNER, Owner, SUB};
use super::requirements::Requirements;

/// The claim's name in the caller's namespace.
pub const NAME: &str = "rexec-server";
/// SHA-256 of the normalised requirements (a label holds its first 32 characters).
pub const DIGEST: &str = "rexec.ndp.io/digest";
pub const GENERATION: &str = "rexec.ndp.io/generation";
pub const PYTHON: &str = "rexec.ndp.io/python";
/// The owner's username when the generation was requested (the `sub` is the identity).
pub const USERNAME: &str = "rexec.ndp.io/username";
/// The requirement lines, as a JSON array.
pub const REQUIREMENTS: &str = "rexec.ndp.io/requirements";
/// Why the generation failed, recorded when its pod is removed for it.
pub const FAILURE: &str = "rexec.ndp.io/failure";
/// When the failure was recorded (RFC 3339).
pub const FAILED_AT: &str = "rexec.ndp.io/failed-at";
/// When the generation was terminated, by its caller or the reaper (RFC 3339).
pub const TERMINATED: &str = "rexec.ndp.io/terminated";
/// Since when the reaper has seen the server idle (RFC 3339); removed once it is busy again.
pub const IDLE_SINCE: &str = "rexec.ndp.io/idle-since";

/// The longest username recorded; a longer one is cut.
const MAX_USERNAME: usize = 256;

/// The claim of a generation: what the server is built from, and for whom.
pub fn build(owner: &Owner, username: &str, reqs: &Requirements, generation: u64) -> ConfigMap {
    let username: String = username.chars().take(MAX_USERNAME).collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": NAME,
            "namespace": owner.namespace,
            "labels": {MANAGED_BY: MANAGER, OWNER: owner.slug, DIGEST: &reqs.digest[..32], GENERATION: generation.to_string()},
            "annotations": {
                SUB: owner.sub,
                USERNAME: username,
                DIGEST: reqs.digest,
                PYTHON: reqs.python,
                GENERATION: generation.to_string(),
                REQUIREMENTS: serde_json::to_string(&reqs.lines()).expect("strings serialise"),
            },
        },
    }))
    .expect("the claim matches the Kubernetes schema")
}

/// What a claim records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The owner's `sub`, and their username when the claim records it.
    pub sub: Option<String>,
    pub username: Option<String>,
    pub digest: String,
    pub generation: u64,
    pub python: String,
    pub requirements: Vec<String>,
    pub created: Option<SystemTime>,
    pub resource_version: Option<String>,
    pub failure: Option<String>,
    pub failed_at: Option<SystemTime>,
    pub terminated: bool,
    pub terminated_at: Option<SystemTime>,
    pub idle_since: Option<SystemTime>,
}

impl Claim {
    /// Reads a claim; one without its digest or generation was not written by this service.
    pub fn read(cm: &ConfigMap) -> Result<Self, ServerError> {
        let annotation = |key: &str| cm.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned();
        let time = |key: &str| annotation(key).and_then(|t| humantime::parse_rfc3339(&t).ok());
        let broken = || {
            tracing::error!(namespace = ?cm.metadata.namespace, "the rexec-server ConfigMap lacks its annotations");
            ServerError::BrokenClaim
        };
        Ok(Self {
            sub: annotation(SUB),
            username: annotation(USERNAME),
            digest: annotation(DIGEST).ok_or_else(broken)?,
            generation: annotation(GENERATION).and_then(|g| g.parse().ok()).ok_or_else(broken)?,
            python: annotation(PYTHON).unwrap_or_default(),
            requirements: annotation(REQUIREMENTS)
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or_default(),
            created: cm.metadata.creation_timestamp.as_ref().map(|t| SystemTime::from(t.0)),
            resource_version: cm.metadata.resource_version.clone(),
            failure: annotation(FAILURE),
            failed_at: time(FAILED_AT),
            terminated: annotation(TERMINATED).is_some(),
            terminated_at: time(TERMINATED),
            idle_since: time(IDLE_SINCE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vars;
    use crate::server::naming::Naming;
    use crate::server::requirements::RequirementsPolicy;

    #[test]
    fn a_claim_reads_back_what_was_written() {
        let owner = Owner::new(&Naming::from_vars(&Vars::default()).unwrap(), "u-1");
        let reqs = RequirementsPolicy::from_vars(&Vars::default())
            .unwrap()
            .check(&["python==3.12", "numpy<2"])
            .unwrap();
        let mut cm = build(&owner, &"ä".repeat(300), &reqs, 7);
        let claim = Claim::read(&cm).unwrap();
        assert_eq!(claim.sub.as_deref(), Some("u-1"));
        assert_eq!(claim.username, Some("ä".repeat(MAX_USERNAME)));
        assert_eq!(
            (claim.digest.as_str(), claim.generation, claim.python.as_str()),
            (reqs.digest.as_str(), 7, "3.12")
        );
        assert_eq!(claim.requirements, reqs.lines());
        assert_eq!((claim.failure, claim.terminated), (None, false));
        let annotations = cm.metadata.annotations.as_mut().unwrap();
        annotations.insert(FAILURE.into(), "pip said no".into());
        annotations.insert(TERMINATED.into(), "2026-11-23T12:00:00Z".into());
        let claim = Claim::read(&cm).unwrap();
        assert_eq!(
            (claim.failure.as_deref(), claim.terminated),
            (Some("pip said no"), true)
        );
        cm.metadata.annotations.as_mut().unwrap().remove(GENERATION);
        assert_eq!(Claim::read(&cm), Err(ServerError::BrokenClaim));
    }
}
