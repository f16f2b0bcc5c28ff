//! The AWS API calls a function makes, through the AWS SDK: `eks:DescribeCluster` (EKS mode,
//! once per container) and `secretsmanager:GetSecretValue` (introspection's client secret, once
//! per container and again after a rotation).
//!
//! Built with the `local` feature (`make dev`, the tests: a developer's machine), credentials
//! and region come from aws-config's chain, as every AWS SDK and the CLI read them: the
//! environment, then the profile (`AWS_PROFILE`: static keys, SSO, `credential_process`, an
//! assumed role), web identity, the container's and the instance's endpoints; credentials that
//! expire are refreshed before they do. A Lambda build reads what the Lambda runtime sets, where
//! the chain would find them first: the role's credentials and the region in the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`); the chain's
//! other providers (profiles, SSO, STS, IMDS), some 1 MiB of every function that calls AWS, are
//! left out of it. Either way a service is reached at its regional endpoint, or at
//! `AWS_ENDPOINT_URL_<SERVICE>` or else `AWS_ENDPOINT_URL` when set: https, or plain http to the
//! loopback interface only. The configuration is read on first use, never at init, so a
//! function that calls no AWS API pays nothing for it. Each attempt ends within [`ATTEMPT`]; a
//! call throttled, failed on the service's side or not connected is tried up to three times
//! (the SDK's standard retries).
//!
//! The SDK's HTTPS client trusts Mozilla's root authorities, compiled in (`webpki-root-certs`,
//! as the service's own clients do with `webpki-roots`): the SDK's default reads the system's CA
//! directory, some 150 files, at a cold start's first AWS call, 1.5-2 ms of every cluster
//! function's cold start, and trusts whatever the image put there.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_eks::error::{DisplayErrorContext, SdkError};
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
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

/// aws-config's chain with the functions' HTTPS client, budget and retries; tests add their own
/// environment, profile files and endpoint to it.
#[cfg(feature = "local")]
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
}

/// The configuration a Lambda build reads from `vars`: the credentials and region the Lambda
/// runtime sets, and the endpoint overrides, with the functions' HTTPS client, budget and
/// retries.
pub fn from_environment(vars: &Vars) -> SdkConfig {
    let region = vars.get("AWS_REGION").or_else(|| vars.get("AWS_DEFAULT_REGION"));
    let credentials = match (vars.get("AWS_ACCESS_KEY_ID"), vars.get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some(SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            vars.get("AWS_SESSION_TOKEN").map(str::to_owned),
            None,
            "Environment",
        ))),
        _ => None,
    };
    let mut config = SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new())
        .region(region.map(|r| aws_config::Region::new(r.to_owned())))
        .service_config(Endpoints(vars.clone()));
    config.set_credentials_provider(credentials);
    config.build()
}

/// `AWS_ENDPOINT_URL_<SERVICE>` or else `AWS_ENDPOINT_URL`, as the SDK's clients ask for them
/// (with the other settings a client may ask the environment for).
#[derive(Debug)]
struct Endpoints(Vars);

impl LoadServiceConfig for Endpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        let specific = format!("{}_{service}", key.env());
        self.0
            .get(&specific)
            .or_else(|| self.0.get(key.env()))
            .map(str::to_owned)
    }
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(ATTEMPT)
        .operation_attempt_timeout(ATTEMPT)
        .build()
}

/// The SDK's own HTTPS client (rustls with aws-lc-rs), trusting Mozilla's roots.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let trust = tls::TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(mozilla_roots_pem());
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store of certificates only");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// Mozilla's root certificates (`webpki-root-certs`) as the one PEM bundle the SDK's trust store
/// takes.
fn mozilla_roots_pem() -> Vec<u8> {
    use base64::Engine;
    let mut pem = Vec::new();
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        pem.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(der).as_bytes());
        pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
    }
    pem
}

/// The function's own configuration, read from its environment on first use.
pub async fn own() -> Result<&'static SdkConfig, AwsError> {
    static OWN: OnceCell<SdkConfig> = OnceCell::const_new();
    OWN.get_or_try_init(|| async {
        let vars = Vars::from_env();
        check_endpoints(&vars)?;
        #[cfg(feature = "local")]
        let config = loader().load().await;
        #[cfg(not(feature = "local"))]
        let config = from_environment(&vars);
        Ok(config)
    })
    .await
}

/// Refuses an endpoint override that would send credentials in clear off this machine.
pub fn check_endpoints(vars: &Vars) -> Result<(), AwsError> {
    for name in ENDPOINT_VARIABLES {
        let Some(value) = vars.get(name) else { continue };
        let secure =
            url::Url::parse(value).is_ok_and(|url| crate::https::secure_or_loopback(url.scheme(), url.host_str()));
        if !secure {
            return Err(AwsError(format!(
                "{name} is not an https URL (plain http only to the loopback interface)"
            )));
        }
    }
    Ok(())
}

/// The current credentials of `config`, for signing by hand (the EKS token); why there are
/// none, in our words only (a `&'static str`, so nothing the provider said can be in it).
pub async fn credentials(config: &SdkConfig) -> Result<Credentials, &'static str> {
    let provider = config.credentials_provider().ok_or("no AWS credentials provider")?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| credentials_failure(&e))
}

/// Why credentials could not be had, in our words: a provider's own message may quote what it
/// read (a `credential_process`'s standard error, a profile's contents), secrets included.
fn credentials_failure(error: &CredentialsError) -> &'static str {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => {
            "no AWS credentials: no provider of the chain has any (see AWS_PROFILE and the environment)"
        }
        CredentialsError::ProviderTimedOut(_) => "no AWS credentials: the provider did not answer in time",
        CredentialsError::InvalidConfiguration(_) => "no AWS credentials: the provider's configuration is invalid",
        CredentialsError::ProviderError(_) => {
            "no AWS credentials: the provider failed (an SSO login expired, or a credential process failed)"
        }
        _ => "no AWS credentials: the provider failed",
    }
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

/// An SDK error in words fit for the log: the service's own error (its code and message), or
/// which step failed before the service answered. The causes of a request that could not be
/// made are left out: resolving its identity quotes the credential provider's own words (see
/// [`credentials_failure`]).
fn context<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(failed) => DisplayErrorContext(failed.err()).to_string(),
        SdkError::TimeoutError(_) => "no answer within the attempt's time".into(),
        SdkError::DispatchFailure(failed) if failed.is_timeout() => "the connection timed out".into(),
        SdkError::DispatchFailure(failed) if failed.is_io() => "the service could not be reached".into(),
        SdkError::DispatchFailure(_) => "the request could not be sent".into(),
        SdkError::ResponseError(_) => "the service's answer could not be read".into(),
        _ => "the request could not be made (no credentials, or no region?)".into(),
    }
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
    fn the_sdk_trusts_mozillas_roots_amazons_among_them() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem = mozilla_roots_pem();
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap();
        let amazon = |name: &[u8]| {
            parsed
                .iter()
                .filter(|der| der.windows(name.len()).any(|w| w == name))
                .count()
        };
        assert_eq!(amazon(b"Amazon Root CA "), 4, "Amazon Root CA 1-4");
        assert_eq!(amazon(b"Starfield Services Root Certificate Authority - G2"), 1);
        let mut roots = rustls::RootCertStore::empty();
        let (valid, invalid) = roots.add_parsable_certificates(parsed);
        assert_eq!((valid, invalid), (webpki_root_certs::TLS_SERVER_ROOT_CERTS.len(), 0));
    }

    /// A Lambda build (no `local` feature; `make test` runs these so) calls DescribeCluster with
    /// the runtime's credentials and region, at the endpoint the environment names.
    #[cfg(not(feature = "local"))]
    #[tokio::test]
    async fn a_lambda_build_calls_aws_with_the_runtimes_credentials_region_and_endpoint() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let eks = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                socket.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let body = r#"{"cluster":{"endpoint":"https://cluster.example","certificateAuthority":{"data":"Q0E="}}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let vars = Vars::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDLAMBDA"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_REGION", "eu-west-2"),
            ("AWS_ENDPOINT_URL_EKS", url.as_str()),
        ]);
        let config = from_environment(&vars);
        let described = describe_cluster(&config, "ndp").await.unwrap();
        assert_eq!(described, (Some("https://cluster.example".into()), Some("Q0E=".into())));
        let request = eks.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /clusters/ndp "), "{request}");
        assert!(request.contains("credential=akidlambda/"), "{request}");
        assert!(request.contains("/eu-west-2/eks/aws4_request"), "{request}");
        assert!(request.contains("x-amz-security-token: session"), "{request}");

        let nothing = from_environment(&Vars::from_pairs([("AWS_REGION", "eu-west-2")]));
        assert!(
            credentials(&nothing).await.is_err(),
            "no credentials in the environment"
        );
        let global = Endpoints(Vars::from_pairs([("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]));
        let key = |service| {
            ServiceConfigKey::builder()
                .service_id(service)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .unwrap()
        };
        assert_eq!(
            global.load_config(key("Secrets Manager")).as_deref(),
            Some("http://127.0.0.1:9")
        );
        let specific = Endpoints(Vars::from_pairs([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:8"),
        ]));
        assert_eq!(
            specific.load_config(key("Secrets Manager")).as_deref(),
            Some("http://127.0.0.1:8")
        );
    }

    #[tokio::test]
    async fn a_providers_failure_is_told_without_its_words() {
        use aws_credential_types::provider::future;
        #[derive(Debug)]
        struct Leaky;
        impl ProvideCredentials for Leaky {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
                    "external process exited with code 1. Stderr: token=SECRET-1234",
                )))
            }
        }
        let config = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(Leaky))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let error = credentials(&config).await.unwrap_err();
        assert!(!error.contains("SECRET"), "{error}");
        assert!(error.contains("the provider failed"), "{error}");
        let error = describe_cluster(&config, "ndp").await.unwrap_err().to_string();
        assert!(!error.contains("SECRET"), "{error}");
        assert!(error.starts_with("eks:DescribeCluster: "), "{error}");
    }

    #[test]
    fn regions_have_their_domain() {
        assert_eq!(dns_suffix("us-west-2"), "amazonaws.com");
        assert_eq!(dns_suffix("cn-north-1"), "amazonaws.com.cn");
    }
}
