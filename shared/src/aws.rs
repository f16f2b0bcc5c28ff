//! The AWS configuration of a function: from the environment (the Lambda role's credentials,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`), loaded once per container on first use.

use aws_config::{BehaviorVersion, SdkConfig};
use tokio::sync::OnceCell;

static SDK_CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();

pub async fn sdk_config() -> &'static SdkConfig {
    SDK_CONFIG
        .get_or_init(|| aws_config::defaults(BehaviorVersion::latest()).load())
        .await
}
