//! Reaching an EKS cluster from Lambda: the cluster's endpoint and CA from `DescribeCluster`,
//! and an EKS bearer token, the way `aws eks get-token` makes it: an STS `GetCallerIdentity`
//! URL presigned (SigV4, in the query) with the signed header `x-k8s-aws-id: <cluster>`,
//! base64url without padding, after `k8s-aws-v1.`. EKS accepts a token for 15 minutes.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tokio::sync::OnceCell;

use super::{Access, ClusterError, certificates};
use crate::aws;

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// How long a presigned URL says it is valid; EKS itself accepts a token for 15 minutes.
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// The cluster's API endpoint and its CA, as `DescribeCluster` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// Base64 of the CA certificate's PEM.
    pub ca: String,
}

pub struct EksConnector {
    cluster: String,
    /// `None`: the function's own ([`aws::own`]).
    aws: Option<SdkConfig>,
    endpoint: OnceCell<Endpoint>,
}

impl EksConnector {
    /// The credentials, the region and the endpoints come from the function's AWS
    /// configuration on first use (see [`crate::aws`]).
    pub fn new(cluster: String) -> Self {
        Self {
            cluster,
            aws: None,
            endpoint: OnceCell::new(),
        }
    }

    /// With an explicit AWS configuration.
    pub fn with_aws(cluster: String, aws: SdkConfig) -> Self {
        Self {
            cluster,
            aws: Some(aws),
            endpoint: OnceCell::new(),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn aws(&self) -> Result<&SdkConfig, ClusterError> {
        match &self.aws {
            Some(aws) => Ok(aws),
            None => aws::own().await.map_err(|e| {
                tracing::error!(error = %e, "the AWS API cannot be called");
                ClusterError::Unavailable("the AWS configuration is unusable".into())
            }),
        }
    }

    /// The endpoint, asked of EKS once per container.
    pub async fn endpoint(&self) -> Result<Endpoint, ClusterError> {
        self.endpoint
            .get_or_try_init(|| async {
                let (url, ca) = aws::describe_cluster(self.aws().await?, &self.cluster)
                    .await
                    .map_err(|e| {
                        tracing::error!(cluster = %self.cluster, error = %e, "eks:DescribeCluster failed");
                        ClusterError::Unavailable("the EKS cluster cannot be described".into())
                    })?;
                Ok(Endpoint {
                    url: url.ok_or_else(|| ClusterError::Unavailable("the EKS cluster has no endpoint yet".into()))?,
                    ca: ca.ok_or_else(|| {
                        ClusterError::Unavailable("the EKS cluster has no certificate authority".into())
                    })?,
                })
            })
            .await
            .cloned()
    }

    /// A new bearer token, from the current credentials.
    pub async fn token(&self) -> Result<String, ClusterError> {
        let config = self.aws().await?;
        // Each reason is in our words (`&'static str`): a signer's or a provider's own may quote
        // what it signed or read, secrets included.
        let unavailable = |reason: &'static str| {
            tracing::error!(error = reason, "cannot make the EKS token");
            ClusterError::Unavailable("cannot make the EKS token".into())
        };
        let credentials = aws::credentials(config).await.map_err(unavailable)?;
        let region = config.region().ok_or_else(|| unavailable("no AWS region"))?;
        token(&credentials, region.as_ref(), &self.cluster, SystemTime::now()).map_err(unavailable)
    }

    /// The cluster's endpoint and CA, with a fresh token.
    pub async fn access(&self) -> Result<Access, ClusterError> {
        let endpoint = self.endpoint().await?;
        let url: http::Uri = endpoint
            .url
            .parse()
            .ok()
            .filter(|url: &http::Uri| {
                crate::https::secure_or_loopback(url.scheme_str().unwrap_or_default(), url.host())
            })
            .ok_or_else(|| ClusterError::Unavailable("the EKS endpoint is not an https URL".into()))?;
        let ca = STANDARD
            .decode(endpoint.ca.trim())
            .ok()
            .and_then(|pem| certificates(&pem))
            .ok_or_else(|| {
                tracing::error!(cluster = %self.cluster, "the EKS certificate authority is not base64 PEM");
                ClusterError::Unavailable("unreadable EKS certificate authority".into())
            })?;
        Ok(Access {
            url,
            ca,
            token: Some(self.token().await?.into()),
        })
    }
}

/// The EKS token for `cluster`, signed with `credentials` in `region` at `time`; else why not,
/// in our words (the signer's errors are not quoted).
pub fn token(credentials: &Credentials, region: &str, cluster: &str, time: SystemTime) -> Result<String, &'static str> {
    let host = format!("sts.{region}.{}", aws::dns_suffix(region));
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|_| "the region or the cluster's name does not make a request to sign")?;
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| "the signing parameters are incomplete")?
        .into();
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|_| "the request cannot be signed")?
        .into_parts();
    let (_, query) = instructions.into_parts();
    let mut signed = url;
    for (name, value) in query {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>());
    }
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(signed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_a_presigned_get_caller_identity() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "test");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_380_000);
        let token = token(&creds, "us-east-1", "ndp", at).unwrap();
        let url = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(token.strip_prefix(TOKEN_PREFIX).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with("https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"),
            "{url}"
        );
        for part in [
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Security-Token=session",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
        assert!(!token.ends_with('='), "no padding");
        let other = super::token(&creds, "us-east-1", "other", at).unwrap();
        assert_ne!(token, other, "the cluster name is signed");
    }

    #[test]
    fn a_token_that_cannot_be_made_is_told_in_our_words() {
        let creds = Credentials::new("AKIDEXAMPLE", "s3cr3t-key", Some("s3ss10n".into()), None, "test");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_380_000);
        assert_eq!(
            token(&creds, "us east 1", "ndp", at),
            Err("the region or the cluster's name does not make a request to sign")
        );
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";

    /// A connector to which `DescribeCluster` gave `url` and a CA.
    fn described(url: &str) -> EksConnector {
        let aws = SdkConfig::builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                Credentials::new("AKID", "secret", None, None, "test"),
            ))
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let connector = EksConnector::with_aws("ndp".into(), aws);
        let endpoint = Endpoint {
            url: url.into(),
            ca: STANDARD.encode(PEM),
        };
        connector.endpoint.set(endpoint).unwrap();
        connector
    }

    #[tokio::test]
    async fn a_described_cluster_is_reached_with_its_ca_and_a_token() {
        let connector = described("https://ABC.gr7.us-east-1.eks.amazonaws.com");
        let access = connector.access().await.unwrap();
        assert_eq!(access.url.host(), Some("ABC.gr7.us-east-1.eks.amazonaws.com"));
        assert_eq!(access.ca, vec![vec![0, 1, 2, 3]]);
        let token = secrecy::ExposeSecret::expose_secret(access.token.as_ref().unwrap()).to_owned();
        assert!(token.starts_with(TOKEN_PREFIX));
        let plain = described("http://ABC.gr7.us-east-1.eks.amazonaws.com");
        assert!(
            matches!(plain.access().await, Err(ClusterError::Unavailable(_))),
            "no token to a plain-http endpoint"
        );
    }
}
