//! `GET /rexec/broker-config`: where clients reach the broker, and the spawn URL for their
//! later calls. Authenticated unless `REXEC_BROKER_CONFIG_PUBLIC=true`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::cluster::Cluster;
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::http::api::rexec::BrokerConfig;
use rexec_shared::http::deployment_api::DeploymentApi;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, json};
use rexec_shared::identity::access::Access;
use rexec_shared::server::broker::BrokerDirectory;

pub struct Deps {
    pub access: Access,
    pub public: bool,
    pub broker: BrokerDirectory,
    pub cluster: Cluster,
    pub deployment_api: DeploymentApi,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            access: Access::from_vars(vars)?,
            public: vars.bool_or("REXEC_BROKER_CONFIG_PUBLIC", false)?,
            broker: BrokerDirectory::from_vars(vars)?,
            cluster: Cluster::from_vars(vars)?,
            deployment_api: DeploymentApi::from_vars(vars)?,
        })
    }
}

/// Where clients reach the broker.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    if !deps.public {
        request::caller(&deps.access, &req).await?;
    }
    let endpoint = deps.broker.endpoint(&deps.cluster).await?;
    let api_url = format!("{}/spawn", deps.deployment_api.url_for(&req)?);
    Ok(json(
        StatusCode::OK,
        &BrokerConfig {
            broker_external_url: format!("{}:{}", endpoint.host, endpoint.port),
            broker_external_host: endpoint.host,
            broker_external_port: endpoint.port,
            api_url,
        },
    ))
}
