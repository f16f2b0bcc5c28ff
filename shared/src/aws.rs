//! The AWS API calls a function makes: `eks:DescribeCluster` (EKS mode, once per container) and
//! `secretsmanager:GetSecretValue` (introspection's client secret, once per container and again
//! after a rotation). Each is one HTTPS request signed with SigV4 and sent with the functions'
//! own client ([`crate::https`]): the AWS SDK would bring a second HTTP stack, its credential
//! chain and the system's CA bundle, read at every cold start, for two calls.
//!
//! The credentials and the region are those the Lambda runtime puts in a function's environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), read once
//! per container on first use. A service is reached at its regional endpoint, or at
//! `AWS_ENDPOINT_URL_<SERVICE>` or else `AWS_ENDPOINT_URL` when set, as the AWS SDKs read them.
//! A call throttled (429), failed on the service's side (5xx) or not connected is tried up to
//! three times.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningInstructions, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::Value;
use url::Url;

use crate::config::Vars;

/// An AWS service: the name it signs with (also its endpoint's first label) and its id in
/// `AWS_ENDPOINT_URL_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    name: &'static str,
    id: &'static str,
}

pub const EKS: Service = Service { name: "eks", id: "EKS" };
pub const SECRETS_MANAGER: Service = Service {
    name: "secretsmanager",
    id: "SECRETS_MANAGER",
};
const SERVICES: [Service; 2] = [EKS, SECRETS_MANAGER];

/// The budget of one attempt, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 3;
/// The longest part of a service's error message kept for the log.
const MESSAGE_MAX: usize = 300;

/// Why a call failed, in words fit for the function's log (never for a caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AwsError(String);

/// Credentials, region and endpoints; its `Debug` shows no secret.
#[derive(Debug)]
pub struct Aws {
    credentials: Credentials,
    region: String,
    /// `AWS_ENDPOINT_URL`.
    endpoint: Option<Url>,
    /// `AWS_ENDPOINT_URL_<id>`, by service.
    service_endpoints: Vec<(Service, Url)>,
    client: reqwest::Client,
}

impl Aws {
    /// `credentials` in `region`; every service at `endpoint` when given, else at its regional
    /// endpoint.
    pub fn new(credentials: Credentials, region: &str, endpoint: Option<&str>) -> Result<Self, AwsError> {
        Ok(Self {
            credentials,
            region: region.to_owned(),
            endpoint: endpoint.map(|url| parse_endpoint("the endpoint", url)).transpose()?,
            service_endpoints: Vec::new(),
            client: crate::https::client(TIMEOUT).map_err(|e| AwsError(format!("no HTTP client: {e}")))?,
        })
    }

    /// From the variables the Lambda runtime sets (see the module's documentation).
    pub fn from_vars(vars: &Vars) -> Result<Self, AwsError> {
        let required = |name: &str| {
            vars.get(name)
                .ok_or_else(|| AwsError(format!("{name} is not set (the Lambda runtime sets it)")))
        };
        let credentials = Credentials::new(
            required("AWS_ACCESS_KEY_ID")?,
            required("AWS_SECRET_ACCESS_KEY")?,
            vars.get("AWS_SESSION_TOKEN").map(str::to_owned),
            None,
            "environment",
        );
        let region = match vars.get("AWS_REGION") {
            Some(region) => region,
            None => vars
                .get("AWS_DEFAULT_REGION")
                .map_or_else(|| required("AWS_REGION"), Ok)?,
        };
        let mut aws = Self::new(credentials, region, None)?;
        if let Some(endpoint) = vars.get("AWS_ENDPOINT_URL") {
            aws.endpoint = Some(parse_endpoint("AWS_ENDPOINT_URL", endpoint)?);
        }
        for service in SERVICES {
            let name = format!("AWS_ENDPOINT_URL_{}", service.id);
            if let Some(endpoint) = vars.get(&name) {
                aws.service_endpoints.push((service, parse_endpoint(&name, endpoint)?));
            }
        }
        Ok(aws)
    }

    /// The function's own, from its environment on first use.
    pub fn from_env() -> Result<&'static Self, AwsError> {
        static AWS: OnceLock<Result<Aws, AwsError>> = OnceLock::new();
        AWS.get_or_init(|| Self::from_vars(&Vars::from_env()))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The service's endpoint: its own override, the global one, or the regional endpoint.
    fn endpoint(&self, service: Service) -> Url {
        self.service_endpoints
            .iter()
            .find(|(one, _)| *one == service)
            .map(|(_, url)| url)
            .or(self.endpoint.as_ref())
            .cloned()
            .unwrap_or_else(|| {
                let host = format!("{}.{}.{}", service.name, self.region, dns_suffix(&self.region));
                Url::parse(&format!("https://{host}")).expect("a regional endpoint is a URL")
            })
    }

    /// A REST operation: `GET` of the path made of `segments`, each percent-encoded.
    pub async fn get(&self, service: Service, segments: &[&str]) -> Result<Value, AwsError> {
        let mut url = self.endpoint(service);
        url.path_segments_mut()
            .map_err(|()| AwsError(format!("the endpoint of {} cannot take a path", service.name)))?
            .pop_if_empty()
            .extend(segments);
        self.call(service, http::Method::GET, url, &[], Vec::new()).await
    }

    /// A JSON-protocol operation: `POST /` of `input` with `X-Amz-Target: <target>`.
    pub async fn post(&self, service: Service, target: &str, input: &Value) -> Result<Value, AwsError> {
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
        let body = serde_json::to_vec(input).map_err(|e| AwsError(e.to_string()))?;
        self.call(service, http::Method::POST, self.endpoint(service), &headers, body)
            .await
    }

    async fn call(
        &self,
        service: Service,
        method: http::Method,
        url: Url,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Value, AwsError> {
        let mut attempt = 1;
        loop {
            let signed = self.sign(service, method.as_str(), &url, headers, &body, SystemTime::now())?;
            let mut request = self.client.request(method.clone(), url.clone()).body(body.clone());
            for (name, value) in headers
                .iter()
                .copied()
                .chain(signed.iter().map(|(n, v)| (*n, v.as_str())))
            {
                request = request.header(name, value);
            }
            let failed = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    return response
                        .json()
                        .await
                        .map_err(|_| AwsError(format!("{} answered with a body that is not JSON", service.name)));
                }
                Ok(response) => {
                    let status = response.status();
                    let retry = status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS;
                    (retry, refusal(service, response).await)
                }
                Err(err) => {
                    let cause = match () {
                        _ if err.is_timeout() => "timed out",
                        _ if err.is_connect() => "could not be connected to",
                        _ => "could not be asked",
                    };
                    (err.is_connect(), AwsError(format!("{} {cause}", service.name)))
                }
            };
            match failed {
                (true, _) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                    attempt += 1;
                }
                (_, err) => return Err(err),
            }
        }
    }

    /// The headers that sign a request to `service` at `time`: `x-amz-date`, the session token
    /// if any, and `authorization` over `host`, `headers` and the body.
    fn sign(
        &self,
        service: Service,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(&'static str, String)>, AwsError> {
        let failed = |e: &dyn std::fmt::Display| AwsError(format!("cannot sign a request to {}: {e}", service.name));
        let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let signed_headers = std::iter::once(("host", host)).chain(headers.iter().copied());
        let signable = SignableRequest::new(method, url.as_str(), signed_headers, SignableBody::Bytes(body))
            .map_err(|e| failed(&e))?;
        let instructions = sign_v4(
            &self.credentials,
            &self.region,
            service.name,
            time,
            SigningSettings::default(),
            signable,
        )
        .map_err(|e| failed(&e))?;
        let (headers, _query) = instructions.into_parts();
        Ok(headers
            .into_iter()
            .map(|header| (header.name(), header.value().to_owned()))
            .collect())
    }
}

/// The SigV4 signature of `request` to the service signing as `service`, with `credentials`
/// in `region` at `time`: headers or query parameters, as `settings` say.
pub fn sign_v4(
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
    settings: SigningSettings,
    request: SignableRequest,
) -> Result<SigningInstructions, String> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let (instructions, _signature) = sign(request, &params).map_err(|e| e.to_string())?.into_parts();
    Ok(instructions)
}

/// A service's refusal in words: its status, its error type (from `x-amzn-errortype` or the
/// body's `__type`) and the start of its message.
async fn refusal(service: Service, response: reqwest::Response) -> AwsError {
    let status = response.status();
    let header = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.unwrap_or_default();
    let kind = header
        .as_deref()
        .or_else(|| body.get("__type").and_then(Value::as_str))
        .map(|kind| kind.split(':').next().unwrap_or_default())
        .map(|kind| kind.rsplit('#').next().unwrap_or_default())
        .unwrap_or("an error");
    let message = ["message", "Message"]
        .iter()
        .find_map(|field| body.get(field).and_then(Value::as_str))
        .unwrap_or_default();
    let message: String = message.chars().take(MESSAGE_MAX).collect();
    AwsError(format!("{} answered {status}, {kind}: {message}", service.name))
}

fn parse_endpoint(name: &str, value: &str) -> Result<Url, AwsError> {
    Url::parse(value)
        .ok()
        .filter(|url| crate::https::secure_or_loopback(url.scheme(), url.host_str()))
        .ok_or_else(|| {
            AwsError(format!(
                "{name} is not an https URL (plain http only to the loopback interface)"
            ))
        })
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

    fn credentials() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
    }

    #[test]
    fn services_are_reached_in_their_region_unless_an_endpoint_is_set() {
        let aws = Aws::new(credentials(), "us-west-2", None).unwrap();
        assert_eq!(aws.endpoint(EKS).as_str(), "https://eks.us-west-2.amazonaws.com/");
        let aws = Aws::new(credentials(), "cn-north-1", None).unwrap();
        assert_eq!(
            aws.endpoint(SECRETS_MANAGER).as_str(),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn/"
        );
        let aws = Aws::from_vars(&Vars::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_EKS", "http://127.0.0.1:6000/eks"),
        ]))
        .unwrap();
        assert_eq!(aws.region(), "eu-west-1");
        assert_eq!(aws.endpoint(EKS).as_str(), "http://127.0.0.1:6000/eks");
        assert_eq!(aws.endpoint(SECRETS_MANAGER).as_str(), "http://127.0.0.1:5000/");
    }

    #[test]
    fn what_is_missing_or_wrong_is_named_and_no_secret_is_shown() {
        let complete = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "a-secret-key"),
            ("AWS_SESSION_TOKEN", "a-session-token"),
            ("AWS_REGION", "us-east-1"),
        ];
        let aws = Aws::from_vars(&Vars::from_pairs(complete)).unwrap();
        let shown = format!("{aws:?}");
        assert!(
            !shown.contains("a-secret-key") && !shown.contains("a-session-token"),
            "{shown}"
        );
        for missing in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
            let vars = Vars::from_pairs(complete.into_iter().filter(|(name, _)| *name != missing));
            let err = Aws::from_vars(&vars).unwrap_err();
            assert!(err.to_string().starts_with(missing), "{err}");
        }
        for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"] {
            for endpoint in [
                "not a url",
                "file:///etc/passwd",
                "ftp://example.com",
                "http://moto.example.org:5000",
                "http://10.0.0.5:5000",
            ] {
                let vars = Vars::from_pairs(complete.into_iter().chain([(name, endpoint)]));
                let err = Aws::from_vars(&vars).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!("{name} is not an https URL (plain http only to the loopback interface)")
                );
            }
        }
    }

    #[test]
    fn a_request_is_signed_over_its_host_headers_and_body() {
        let aws = Aws::new(credentials(), "us-east-1", Some("http://127.0.0.1:5000")).unwrap();
        let url = aws.endpoint(SECRETS_MANAGER);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = [("x-amz-target", "secretsmanager.GetSecretValue")];
        let signed = aws.sign(SECRETS_MANAGER, "POST", &url, &headers, b"{}", at).unwrap();
        let header = |name: &str| signed.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("x-amz-date"), Some("20231114T221320Z"));
        let authorization = header("authorization").unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/secretsmanager/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-target, Signature="
            ),
            "{authorization}"
        );
        let other_body = aws.sign(SECRETS_MANAGER, "POST", &url, &headers, b"{ }", at).unwrap();
        assert_ne!(signed, other_body, "the body is signed");
    }
}
