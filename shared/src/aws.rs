//! The AWS API calls a function makes, through the AWS SDK: `eks:DescribeCluster` (EKS mode,
//! once per container) and `secretsmanager:GetSecretValue` (introspection's client secret, once
//! per container and again after a rotation).
//!
//! Credentials and region come from aws-config's chain, as every AWS SDK and the CLI read them:
//! the environment (where the Lambda runtime puts the function role's), then the profile
//! (`AWS_PROFILE`: static keys, SSO, `credential_process`, an assumed role), web identity, the
//! container's and the instance's endpoints; credentials that expire are refreshed before they
//! do. A service is reached at its regional endpoint, or at `AWS_ENDPOINT_URL_<SERVICE>` or else
//! `AWS_ENDPOINT_URL` when set: https, or plain http to the loopback interface only. The
//! configuration is read on first use, never at init, so a function that calls no AWS API pays
//! nothing for it. Each attempt ends within [`ATTEMPT`]; a call throttled, failed on the
//! service's side or not connected is tried up to three times (the SDK's standard retries).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{ConfigLoader, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use tokio::sync::OnceCell;

use crate::config::Vars;

/// The budget of one attempt, connection included.
pub const ATTEMPT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 3;
/// The endpoint overrides of the services the functions call.
const ENDPOINT_VARIABLES: [&str; 3] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EKS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
];

/// Why a call failed, in words fit for the function's log (never for a caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AwsError(String);

/// The chain's loader with the functions' budget and retries; tests add their own environment,
/// profile files and endpoint to it.
pub fn loader() -> ConfigLoader {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(ATTEMPT)
        .operation_attempt_timeout(ATTEMPT)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(ATTEMPTS))
}

/// The function's own configuration, read from its environment on first use.
pub async fn own() -> Result<&'static SdkConfig, AwsError> {
    static OWN: OnceCell<SdkConfig> = OnceCell::const_new();
    OWN.get_or_try_init(|| async {
        check_endpoints(&Vars::from_env())?;
        Ok(loader().load().await)
    })
    .await
}

/// Refuses an endpoint override that would send credentials in clear off this machine.
pub fn check_endpoints(vars: &Vars) -> Result<(), AwsError> {
    for name in ENDPOINT_VARIABLES {
        let Some(value) = vars.get(name) else { continue };
        let secure = url::Url::parse(value)
            .is_ok_and(|url| crate::https::secure_or_loopback(url.scheme(), url.host_str()));
        if !secure {
            return Err(AwsError(format!(
                "{name} is not an https URL (plain http only to the loopback interface)"
            )));
        }
    }
    Ok(())
}

/// The current credentials of `config`, for signing by hand (the EKS token).
pub async fn credentials(config: &SdkConfig) -> Result<Credentials, AwsError> {
    let provider = config
        .credentials_provider()
        .ok_or_else(|| AwsError("no AWS credentials provider".into()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| AwsError(format!("no AWS credentials: {}", context(&e))))
}

/// `eks:DescribeCluster` of `name`: its endpoint and the base64 of its CA's PEM, when it has them.
pub async fn describe_cluster(config: &SdkConfig, name: &str) -> Result<(Option<String>, Option<String>), AwsError> {
    let described = aws_sdk_eks::Client::new(config)
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| AwsError(format!("eks:DescribeCluster: {}", context(&e))))?;
    let cluster = described.cluster();
    Ok((
        cluster.and_then(|c| c.endpoint()).map(str::to_owned),
        (cluster.and_then(|c| c.certificate_authority()))
            .and_then(|ca| ca.data())
            .map(str::to_owned),
    ))
}

/// `secretsmanager:GetSecretValue` of `id`: its string, when it has one.
pub async fn secret_string(config: &SdkConfig, id: &str) -> Result<Option<String>, AwsError> {
    let answer = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| AwsError(format!("secretsmanager:GetSecretValue: {}", context(&e))))?;
    Ok(answer.secret_string().map(str::to_owned))
}

/// An SDK error with its causes, as the SDK displays them.
fn context(error: &(dyn std::error::Error + 'static)) -> String {
    aws_sdk_eks::error::DisplayErrorContext(error).to_string()
}

/// The domain of a region's endpoints.
pub fn dns_suffix(region: &str) -> &'static str {
    match region.starts_with("cn-") {
        true => "amazonaws.com.cn",
        false => "amazonaws.com",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_override_is_https_or_on_this_machine() {
        for url in ["https://eks.example", "http://127.0.0.1:5000", "http://localhost:1"] {
            let vars = Vars::from_pairs([("AWS_ENDPOINT_URL_EKS", url)]);
            assert_eq!(check_endpoints(&vars), Ok(()), "{url}");
        }
        for (name, url) in [
            ("AWS_ENDPOINT_URL", "http://moto.example:5000"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "not a url"),
        ] {
            let err = check_endpoints(&Vars::from_pairs([(name, url)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn regions_have_their_domain() {
        assert_eq!(dns_suffix("us-west-2"), "amazonaws.com");
        assert_eq!(dns_suffix("cn-north-1"), "amazonaws.com.cn");
    }
}
