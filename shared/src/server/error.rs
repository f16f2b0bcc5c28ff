//! What can go wrong with a caller's server, by meaning. Nothing here knows about HTTP: the
//! edge above gives each its status, in `http::error`.

use super::environment::Refusal;
use crate::cluster::ClusterError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// The cluster refused or failed a call.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A namespace of the caller's name exists, and this service does not manage it for them.
    #[error("the namespace is not managed for this caller")]
    NamespaceTaken,
    /// The caller's server runs other requirements; replacing it must be asked for.
    #[error("the server runs other requirements")]
    DifferentRequirements {
        /// The requirement lines the server runs.
        running: Vec<String>,
    },
    /// The claim lacks what this service writes in it.
    #[error("the claim is broken")]
    BrokenClaim,
    /// A list's `continue` token that the cluster refused, or that expired.
    #[error("the continue token is invalid or expired")]
    BadContinue,
    /// The caller started a build of another environment that has not ended.
    #[error("a build started by this caller is in progress")]
    BuildInProgress { retry_after: std::time::Duration },
    /// As many builds run as `REXEC_MAX_BUILDS` allows, or the builds' quota is full.
    #[error("every build slot is taken")]
    BuildsBusy { retry_after: std::time::Duration },
    /// The broker's external address cannot be told: the reason, for the caller.
    #[error("broker unavailable: {0}")]
    BrokerUnavailable(&'static str),
}

impl From<Refusal> for ServerError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InProgress { retry_after } => Self::BuildInProgress { retry_after },
            Refusal::Busy { retry_after } => Self::BuildsBusy { retry_after },
        }
    }
}
