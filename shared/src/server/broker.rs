//! The broker: its in-cluster Service, where servers connect ([`BrokerService`]: the name, the
//! namespace and the port, read once), and where clients reach it from outside the cluster
//! ([`BrokerDirectory`]).
//!
//! From outside: `REXEC_BROKER_EXTERNAL_HOST` (and `REXEC_BROKER_EXTERNAL_PORT`, default 5559) when set;
//! otherwise discovered from the broker's Service (`REXEC_BROKER_EXTERNAL_SERVICE_NAME`, default
//! the in-cluster `REXEC_BROKER_SERVICE_NAME`, in `REXEC_BROKER_NAMESPACE`): the port whose
//! `port` is `REXEC_BROKER_CLIENT_PORT` (default 5559) or is named `client`, reached through
//! the LoadBalancer's ingress. Discovery reads that one Service in the broker's namespace and
//! nothing else (a Role there, not a ClusterRole): a NodePort Service names no address, so it
//! needs `REXEC_BROKER_EXTERNAL_HOST`. Discovered addresses are kept for a minute per container.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use kube::api::Api;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ServerError;
use crate::cluster::{Cluster, ClusterError};
use crate::config::{ConfigError, Vars};

const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// Where the pod's server connects: the broker's in-cluster Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerService {
    pub name: String,
    pub namespace: String,
    pub port: u16,
}

impl BrokerService {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            name: vars
                .get("REXEC_BROKER_SERVICE_NAME")
                .unwrap_or("rexec-broker")
                .to_owned(),
            namespace: vars.get("REXEC_BROKER_NAMESPACE").unwrap_or("rexec").to_owned(),
            port: vars.parse_or("REXEC_BROKER_PORT", 5560)?,
        })
    }

    /// The in-cluster DNS name of the broker.
    pub fn host(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BrokerEndpoint {
    pub host: String,
    pub port: u16,
}

pub struct BrokerDirectory {
    fixed: Option<BrokerEndpoint>,
    /// The Service discovered: the in-cluster one unless `REXEC_BROKER_EXTERNAL_SERVICE_NAME`.
    service: BrokerService,
    client_port: u16,
    discovered: Mutex<Option<(Instant, BrokerEndpoint)>>,
}

impl BrokerDirectory {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let client_port = vars.parse_or("REXEC_BROKER_CLIENT_PORT", 5559)?;
        let fixed = match vars.get("REXEC_BROKER_EXTERNAL_HOST") {
            Some(host) => Some(BrokerEndpoint {
                host: host.to_owned(),
                port: vars.parse_or("REXEC_BROKER_EXTERNAL_PORT", client_port)?,
            }),
            None => None,
        };
        let mut service = BrokerService::from_vars(vars)?;
        if let Some(name) = vars.get("REXEC_BROKER_EXTERNAL_SERVICE_NAME") {
            service.name = name.to_owned();
        }
        Ok(Self {
            fixed,
            service,
            client_port,
            discovered: Mutex::new(None),
        })
    }

    pub async fn endpoint(&self, cluster: &Cluster) -> Result<BrokerEndpoint, ServerError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        if let Some((at, endpoint)) = self.discovered.lock().expect("broker cache").clone()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(endpoint);
        }
        let endpoint = self.discover(cluster).await?;
        *self.discovered.lock().expect("broker cache") = Some((Instant::now(), endpoint.clone()));
        Ok(endpoint)
    }

    async fn discover(&self, cluster: &Cluster) -> Result<BrokerEndpoint, ServerError> {
        let client = cluster.client().await?;
        let services: Api<Service> = Api::namespaced(client.clone(), &self.service.namespace);
        let service = match services.get(&self.service.name).await.map_err(ClusterError::from) {
            Ok(service) => service,
            Err(ClusterError::NotFound) => {
                tracing::error!(service = %self.service.name, namespace = %self.service.namespace, "the broker Service does not exist");
                return Err(not_ready("The broker is not deployed on the cluster."));
            }
            Err(err) => return Err(err.into()),
        };
        let spec = service.spec.unwrap_or_default();
        let ports = spec.ports.unwrap_or_default();
        let port = pick_port(&ports, self.client_port).ok_or_else(|| {
            tracing::error!(service = %self.service.name, "the broker Service has no client port");
            not_ready("The broker exposes no client port.")
        })?;
        match spec.type_.as_deref() {
            Some("LoadBalancer") => {
                let ingress = service
                    .status
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .unwrap_or_default();
                let host = ingress
                    .into_iter()
                    .find_map(|i| i.hostname.or(i.ip))
                    .ok_or_else(|| not_ready("The broker's load balancer has no address yet."))?;
                Ok(BrokerEndpoint {
                    host,
                    port: port.port as u16,
                })
            }
            Some("NodePort") => {
                tracing::error!(
                    "the broker Service is a NodePort: set REXEC_BROKER_EXTERNAL_HOST to an address of its nodes"
                );
                Err(not_ready("The broker's address is not configured."))
            }
            other => {
                tracing::error!(service_type = ?other, "the broker Service is not reachable from outside (use LoadBalancer or NodePort, or set REXEC_BROKER_EXTERNAL_HOST)");
                Err(not_ready("The broker is not reachable from outside the cluster."))
            }
        }
    }
}

fn pick_port(ports: &[ServicePort], client_port: u16) -> Option<&ServicePort> {
    ports
        .iter()
        .find(|p| p.port == i32::from(client_port))
        .or_else(|| ports.iter().find(|p| p.name.as_deref() == Some("client")))
        .or(if ports.len() == 1 { ports.first() } else { None })
}

fn not_ready(detail: &'static str) -> ServerError {
    ServerError::BrokerUnavailable(detail)
}
