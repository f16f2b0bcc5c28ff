//! Reaching the Kubernetes cluster, and reading its errors by meaning.
//!
//! With `EKS_CLUSTER_NAME` the cluster is found through `eks:DescribeCluster` and reached with
//! an EKS token (see [`eks`]): the Lambda functions' only way. Builds with the `kubeconfig`
//! feature (`make dev`, the tests) also read `KUBECONFIG` with kube's own loader (see
//! [`kubeconfig`]), or the pod's service account when they run in a cluster. The client is built
//! on first use and kept for the container, rebuilt with fresh credentials every
//! [`TOKEN_REFRESH`], so an unreachable cluster answers 503 instead of failing the function's
//! init.

pub mod eks;
mod error;
#[cfg(feature = "local")]
pub mod kubeconfig;
pub mod quantity;
mod transport;

use std::time::{Duration, Instant};

use kube::Client;
use secrecy::SecretString;
use tokio::sync::Mutex;

use eks::EksConnector;
pub use error::ClusterError;

use crate::config::{ConfigError, Vars};

/// A client is rebuilt with fresh credentials after this long: well before EKS refuses its
/// token (15 minutes), and soon after a kubeconfig's token file is rotated.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);

pub struct Cluster {
    connector: Connector,
    timeout: Duration,
    client: Mutex<Option<(Client, Instant)>>,
}

/// How the cluster is found.
pub enum Connector {
    Eks(Box<EksConnector>),
    /// A kubeconfig file (local runs and tests), and which of its contexts.
    #[cfg(feature = "local")]
    Kubeconfig(std::path::PathBuf, kubeconfig::Choice),
    /// The service account of the pod this runs in.
    #[cfg(feature = "local")]
    InCluster,
    /// None: every call answers 503, and the log says what to set.
    Unset,
}

/// What the API server is reached with.
pub struct Access {
    /// The API server's base URL: `https`, or `http` on the loopback interface only.
    pub url: http::Uri,
    /// The DER certificates its certificate is checked against; none: Mozilla's authorities.
    pub ca: Vec<Vec<u8>>,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<SecretString>,
}

impl Cluster {
    /// `EKS_CLUSTER_NAME` names the EKS cluster; without it `KUBECONFIG` names a kubeconfig
    /// file (see [`kubeconfig`] for `KUBE_CONTEXT`, `KUBE_AS_FUNCTION` and
    /// `KUBE_ALLOW_INSECURE_TLS`). `KUBE_TIMEOUT_SECONDS` (default 8): budget for connecting to
    /// the API server and for each read and write of a call, well inside API Gateway's 30
    /// seconds.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let timeout = vars.seconds_or("KUBE_TIMEOUT_SECONDS", Duration::from_secs(8))?;
        if timeout.is_zero() {
            return Err(ConfigError::new("KUBE_TIMEOUT_SECONDS", "must be greater than zero"));
        }
        let connector = match vars.get("EKS_CLUSTER_NAME") {
            Some(cluster) => Connector::Eks(Box::new(EksConnector::new(cluster.to_owned()))),
            None => local(vars)?,
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

    /// The client, built on first use and rebuilt when its credentials are due.
    pub async fn client(&self) -> Result<Client, ClusterError> {
        let mut cached = self.client.lock().await;
        if let Some((client, built)) = cached.as_ref()
            && !is_due(*built, Instant::now())
        {
            return Ok(client.clone());
        }
        let client = self.build().await?;
        *cached = Some((client.clone(), Instant::now()));
        Ok(client)
    }

    async fn build(&self) -> Result<Client, ClusterError> {
        let unusable = |what: &str, error: String| {
            tracing::error!(error = %error, "{what}");
            ClusterError::Unavailable(what.to_owned())
        };
        match &self.connector {
            // No client-side retries: API Gateway gives a request 30 seconds, so a failing
            // cluster is answered at once with 503 and Retry-After, and the caller retries.
            Connector::Eks(eks) => transport::client(eks.access().await?, self.timeout)
                .map_err(|e| unusable("cannot build the cluster client", e)),
            #[cfg(feature = "local")]
            Connector::Kubeconfig(path, choice) => {
                let config = kubeconfig::config(path, choice).await.map_err(|e| {
                    tracing::error!(kubeconfig = %path.display(), error = %e, "the kubeconfig cannot be used");
                    ClusterError::Unavailable("the kubeconfig cannot be used".into())
                })?;
                transport::from_config(config, self.timeout).map_err(|e| unusable("cannot build the cluster client", e))
            }
            #[cfg(feature = "local")]
            Connector::InCluster => {
                let config = kube::Config::incluster()
                    .map_err(|e| unusable("the pod's service account cannot be used", e.to_string()))?;
                transport::from_config(config, self.timeout).map_err(|e| unusable("cannot build the cluster client", e))
            }
            Connector::Unset => {
                tracing::error!("no cluster configured: set EKS_CLUSTER_NAME (or KUBECONFIG for a local run)");
                Err(ClusterError::Unavailable("no cluster configured".into()))
            }
        }
    }
}

/// Without EKS: the kubeconfig `KUBECONFIG` names, else the pod's service account in a cluster.
#[cfg(feature = "local")]
fn local(vars: &Vars) -> Result<Connector, ConfigError> {
    let Some(path) = vars.get("KUBECONFIG") else {
        return Ok(match vars.get("KUBERNETES_SERVICE_HOST") {
            Some(_) => Connector::InCluster,
            None => Connector::Unset,
        });
    };
    let choice = kubeconfig::Choice {
        context: vars.get("KUBE_CONTEXT").map(str::to_owned),
        function: vars.get("AWS_LAMBDA_FUNCTION_NAME").map(str::to_owned),
        as_function: vars.bool_or("KUBE_AS_FUNCTION", false)?,
        allow_insecure: vars.bool_or("KUBE_ALLOW_INSECURE_TLS", false)?,
    };
    Ok(Connector::Kubeconfig(path.into(), choice))
}

/// The Lambda builds reach EKS only: a kubeconfig is a mistake worth naming.
#[cfg(not(feature = "local"))]
fn local(vars: &Vars) -> Result<Connector, ConfigError> {
    match vars.get("KUBECONFIG") {
        Some(_) => Err(ConfigError::new(
            "KUBECONFIG",
            "this build reaches EKS only (set EKS_CLUSTER_NAME); a kubeconfig needs the `local` feature, which `make dev` turns on",
        )),
        None => Ok(Connector::Unset),
    }
}

/// The DER certificates of a PEM bundle; `None` when it holds none or a broken one.
fn certificates(pem: &[u8]) -> Option<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<_, _>>()
        .ok()?;
    (!ders.is_empty()).then_some(ders)
}

/// Whether a client built at `built` must be rebuilt at `now`.
fn is_due(built: Instant, now: Instant) -> bool {
    now.duration_since(built) >= TOKEN_REFRESH
}

/// Objects per page of [`list_all`], unless its parameters say otherwise.
pub const LIST_PAGE: u32 = 500;

/// Every object a list names, page by page.
pub async fn list_all<K>(api: kube::Api<K>, params: kube::api::ListParams) -> Result<Vec<K>, ClusterError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut all = Vec::new();
    let page = params.limit.unwrap_or(LIST_PAGE);
    let mut params = params.limit(page);
    loop {
        let page = api.list(&params).await.map_err(ClusterError::from)?;
        all.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// A deletion of the object only as it was read (its `resourceVersion`): 409 if it changed since.
pub fn as_read(version: Option<String>) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: version,
            uid: None,
        }),
        ..kube::api::DeleteParams::default()
    }
}

/// How often a call refused as [`ClusterError::NotReady`] is tried, and how far apart: the
/// controller manager makes a new namespace's default service account, and a new quota's usage,
/// within moments.
const NOT_READY_TRIES: u32 = 10;
const NOT_READY_PAUSE: Duration = Duration::from_millis(200);

/// Creates `object`, tried again while the API server answers that a new namespace's admission
/// is not ready ([`ClusterError::NotReady`]), at most [`NOT_READY_TRIES`] times in all.
pub async fn create<K>(api: &kube::Api<K>, object: &K) -> Result<K, ClusterError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    until_ready(NOT_READY_TRIES, NOT_READY_PAUSE, || async {
        api.create(&kube::api::PostParams::default(), object)
            .await
            .map_err(ClusterError::from)
    })
    .await
}

async fn until_ready<T, F, Fut>(most: u32, pause: Duration, mut call: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let mut tries = 1;
    loop {
        match call().await {
            Err(ClusterError::NotReady(reason)) if tries < most => {
                tracing::info!(%reason, "the namespace's admission is not ready yet: trying again");
                tries += 1;
                tokio::time::sleep(pause).await;
            }
            answered => return answered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_rebuilt_before_an_eks_token_expires() {
        let built = Instant::now();
        assert!(!is_due(built, built + Duration::from_secs(9 * 60)));
        assert!(is_due(built, built + TOKEN_REFRESH));
        assert!(
            TOKEN_REFRESH < Duration::from_secs(15 * 60),
            "before EKS refuses the token"
        );
    }

    #[test]
    fn the_cluster_is_chosen_by_settings() {
        let eks = Cluster::from_vars(&Vars::from_pairs([("EKS_CLUSTER_NAME", "ndp"), ("KUBECONFIG", "/k")])).unwrap();
        assert!(matches!(eks.connector, Connector::Eks(ref c) if c.cluster() == "ndp"));
        let unset = Cluster::from_vars(&Vars::from_pairs([])).unwrap();
        assert!(matches!(unset.connector, Connector::Unset));
        let err = Cluster::from_vars(&Vars::from_pairs([("KUBE_TIMEOUT_SECONDS", "0")]))
            .err()
            .unwrap();
        assert_eq!(err.variable, "KUBE_TIMEOUT_SECONDS");
    }

    #[cfg(feature = "local")]
    #[test]
    fn a_local_cluster_is_a_kubeconfig_or_the_pods_service_account() {
        let local = Cluster::from_vars(&Vars::from_pairs([("KUBECONFIG", "/k")])).unwrap();
        assert!(
            matches!(local.connector, Connector::Kubeconfig(ref p, ref c) if p.to_str() == Some("/k") && *c == Default::default())
        );
        let named = Cluster::from_vars(&Vars::from_pairs([
            ("KUBECONFIG", "/k"),
            ("KUBE_CONTEXT", "kind-dev"),
            ("AWS_LAMBDA_FUNCTION_NAME", "spawn-server"),
            ("KUBE_AS_FUNCTION", "true"),
            ("KUBE_ALLOW_INSECURE_TLS", "true"),
        ]))
        .unwrap();
        let chosen = kubeconfig::Choice {
            context: Some("kind-dev".into()),
            function: Some("spawn-server".into()),
            as_function: true,
            allow_insecure: true,
        };
        assert!(matches!(named.connector, Connector::Kubeconfig(_, ref c) if *c == chosen));
        let pod = Cluster::from_vars(&Vars::from_pairs([("KUBERNETES_SERVICE_HOST", "10.0.0.1")])).unwrap();
        assert!(matches!(pod.connector, Connector::InCluster));
        let err = Cluster::from_vars(&Vars::from_pairs([("KUBECONFIG", "/k"), ("KUBE_AS_FUNCTION", "maybe")]))
            .err()
            .unwrap();
        assert_eq!(err.variable, "KUBE_AS_FUNCTION");
    }

    #[cfg(not(feature = "local"))]
    #[test]
    fn a_lambda_build_refuses_a_kubeconfig_by_name() {
        let err = Cluster::from_vars(&Vars::from_pairs([("KUBECONFIG", "/k")]))
            .err()
            .unwrap();
        assert_eq!(err.variable, "KUBECONFIG");
        assert!(err.reason.contains("EKS_CLUSTER_NAME"), "{}", err.reason);
    }

    #[test]
    fn certificate_authorities_are_read_from_pem_bundles() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(certificates(pem.as_bytes()), Some(vec![vec![0, 1, 2, 3]]));
        let bundle = format!("{pem}-----BEGIN CERTIFICATE-----\nBAU=\n-----END CERTIFICATE-----\n");
        assert_eq!(
            certificates(bundle.as_bytes()),
            Some(vec![vec![0, 1, 2, 3], vec![4, 5]])
        );
        assert_eq!(certificates(b"no certificate here"), None);
        assert_eq!(
            certificates(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            None
        );
    }

    #[tokio::test]
    async fn a_call_is_tried_again_while_the_namespace_is_not_ready_and_no_longer() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let call = |ready_after: u32| {
            let tries = &tries;
            move || async move {
                let n = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if n < ready_after {
                    Err(ClusterError::NotReady("no default service account".into()))
                } else {
                    Ok(n)
                }
            }
        };
        let pause = Duration::from_millis(1);
        assert_eq!(until_ready(NOT_READY_TRIES, pause, call(3)).await, Ok(3));
        tries.store(0, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            until_ready(NOT_READY_TRIES, pause, call(u32::MAX)).await,
            Err(ClusterError::NotReady("no default service account".into()))
        );
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), NOT_READY_TRIES);
        tries.store(0, std::sync::atomic::Ordering::SeqCst);
        let forbidden = || {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err::<(), _>(ClusterError::Forbidden("rbac".into())) }
        };
        assert_eq!(
            until_ready(NOT_READY_TRIES, pause, forbidden).await,
            Err(ClusterError::Forbidden("rbac".into()))
        );
        assert_eq!(
            tries.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "anything else is answered at once"
        );
    }

    #[tokio::test]
    async fn without_a_cluster_every_call_is_unavailable() {
        let cluster = Cluster::new(Connector::Unset, Duration::from_secs(1));
        assert_eq!(
            cluster.client().await.err(),
            Some(ClusterError::Unavailable("no cluster configured".into()))
        );
    }
}
