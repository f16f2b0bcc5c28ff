//! `GET /rexec/broker-config`: where clients reach the broker, and the spawn URL for their
//! later calls. Authenticated unless `REXEC_BROKER_CONFIG_PUBLIC=true`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rexec_shared::access::Access;
use rexec_shared::broker::BrokerDirectory;
use rexec_shared::cluster::Cluster;
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::deployment_api::DeploymentApi;
use rexec_shared::error::{ApiError, ErrorBody};
use rexec_shared::request::json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrokerConfig {
    #[schema(example = "broker.example.org")]
    pub broker_external_host: String,
    #[schema(example = 5559)]
    pub broker_external_port: u16,
    /// `host:port`.
    #[schema(example = "broker.example.org:5559")]
    pub broker_external_url: String,
    /// The spawn route, for the client's later calls.
    #[schema(example = "https://api.example.org/rexec/spawn")]
    pub api_url: String,
}

/// Where clients reach the broker.
#[utoipa::path(
    get,
    path = "/broker-config",
    tag = "broker",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The broker's external address.", body = BrokerConfig),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 503, description = "The broker's address is not known yet, or a service is unreachable.", body = ErrorBody),
    )
)]
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    if !deps.public {
        deps.access.caller(&req).await?;
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
