//! Reaching the Kubernetes cluster, and reading its errors by meaning.
//!
//! With `EKS_CLUSTER_NAME` the cluster is found through `eks:DescribeCluster` and reached with
//! an EKS token (see [`eks`]); otherwise a kubeconfig or the in-cluster service account.
//! The client is built on first use and kept for the container (an EKS one is rebuilt with a
//! new token every 10 minutes), so an unreachable cluster answers 503 instead of failing the
//! function's init.

pub mod eks;
mod error;

use std::path::PathBuf;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kube::Client;
use kube::client::ClientBuilder;
use tokio::sync::Mutex;

use eks::{EksConnector, TOKEN_REFRESH};
pub use error::ClusterError;

use crate::config::{ConfigError, Vars};
use crate::metrics::{self, Metric};

pub struct Cluster {
    connector: Connector,
    timeout: Duration,
    client: Mutex<Option<(Client, Instant)>>,
}

/// How the cluster is found.
pub enum Connector {
    /// A kubeconfig file, or (without one) in-cluster inference and `~/.kube/config`.
    Kubeconfig(Option<PathBuf>),
    Eks(Box<EksConnector>),
}

impl Cluster {
    /// `KUBECONFIG` names a kubeconfig file (its current context is used); without it the
    /// in-cluster service account or `~/.kube/config` is inferred. `KUBE_TIMEOUT_SECONDS`
    /// (default 8): budget for one call to the API server, well inside API Gateway's 30 seconds.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let timeout = vars.seconds_or("KUBE_TIMEOUT_SECONDS", Duration::from_secs(8))?;
        if timeout.is_zero() {
            return Err(ConfigError::new("KUBE_TIMEOUT_SECONDS", "must be greater than zero"));
        }
        let connector = match vars.get("EKS_CLUSTER_NAME") {
            Some(cluster) => Connector::Eks(Box::new(EksConnector::new(cluster.to_owned()))),
            None => Connector::Kubeconfig(vars.get("KUBECONFIG").map(PathBuf::from)),
        };
        Ok(Self::new(connector, timeout))
    }

    pub fn new(connector: Connector, timeout: Duration) -> Self {
        Self {
            connector,
            timeout,
            client: Mutex::new(None),
        }
    }

    /// The client, built on first use and rebuilt when its EKS token is due.
    pub async fn client(&self) -> Result<Client, ClusterError> {
        let mut cached = self.client.lock().await;
        if let Some((client, built)) = cached.as_ref()
            && !self.is_due(*built, Instant::now())
        {
            return Ok(client.clone());
        }
        let mut config = self.config().await?;
        config.connect_timeout = Some(self.timeout);
        config.read_timeout = Some(self.timeout);
        config.write_timeout = Some(self.timeout);
        // No client-side retries: API Gateway gives a request 30 seconds, so a failing cluster
        // is answered at once with 503 and Retry-After, and the caller retries.
        config.default_retry = false;
        let client = ClientBuilder::try_from(config)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot build the cluster client");
                ClusterError::Unavailable("cannot build the cluster client".into())
            })?
            .with_layer(&tower::layer::layer_fn(Timed))
            .build();
        *cached = Some((client.clone(), Instant::now()));
        Ok(client)
    }

    /// Whether a client built at `built` must be rebuilt at `now`: an EKS client before its
    /// token expires; a kubeconfig client never (its credentials refresh themselves).
    fn is_due(&self, built: Instant, now: Instant) -> bool {
        matches!(self.connector, Connector::Eks(_)) && now.duration_since(built) >= TOKEN_REFRESH
    }

    async fn config(&self) -> Result<kube::Config, ClusterError> {
        let unusable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "no usable cluster configuration (KUBECONFIG, in-cluster or ~/.kube/config)");
            ClusterError::Unavailable("no cluster configuration".into())
        };
        match &self.connector {
            Connector::Eks(eks) => eks.config().await,
            Connector::Kubeconfig(Some(path)) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| unusable(&e))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|e| unusable(&e))
            }
            Connector::Kubeconfig(None) => kube::Config::infer().await.map_err(|e| unusable(&e)),
        }
    }
}

/// Times each call to the API server (`ClusterLatency`, see [`crate::metrics`]).
#[derive(Clone)]
struct Timed<S>(S);

impl<S: tower::Service<R>, R> tower::Service<R> for Timed<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = metrics::Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        metrics::Timed::new(self.0.call(request), Metric::ClusterLatency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eks_clients_are_rebuilt_before_the_token_expires() {
        let eks = Cluster::new(
            Connector::Eks(Box::new(EksConnector::new("ndp".into()))),
            Duration::from_secs(8),
        );
        let local = Cluster::new(Connector::Kubeconfig(None), Duration::from_secs(8));
        let built = Instant::now();
        assert!(!eks.is_due(built, built + Duration::from_secs(9 * 60)));
        assert!(eks.is_due(built, built + TOKEN_REFRESH));
        assert!(
            TOKEN_REFRESH < Duration::from_secs(15 * 60),
            "before EKS refuses the token"
        );
        assert!(!local.is_due(built, built + Duration::from_secs(3600)));
    }

    #[test]
    fn the_cluster_is_chosen_by_settings() {
        let eks = Cluster::from_vars(&Vars::from_pairs([("EKS_CLUSTER_NAME", "ndp"), ("KUBECONFIG", "/k")])).unwrap();
        assert!(matches!(eks.connector, Connector::Eks(ref c) if c.cluster() == "ndp"));
        let local = Cluster::from_vars(&Vars::from_pairs([("KUBECONFIG", "/k")])).unwrap();
        assert!(matches!(local.connector, Connector::Kubeconfig(Some(ref p)) if p.to_str() == Some("/k")));
        let err = Cluster::from_vars(&Vars::from_pairs([("KUBE_TIMEOUT_SECONDS", "0")]))
            .err()
            .unwrap();
        assert_eq!(err.variable, "KUBE_TIMEOUT_SECONDS");
    }
}
