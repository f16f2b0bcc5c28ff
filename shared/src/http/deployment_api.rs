//! Where the Rexec Deployment API lives, as the NDP Endpoint API tells its clients.
//!
//! `REXEC_DEPLOYMENT_API_URL` when set; otherwise the Deployment API is assumed to be on the
//! same host under `/rexec` (one API Gateway serves both), with the request's scheme as
//! API Gateway forwards it (`X-Forwarded-Proto`, https by default). `REXEC_ENABLED=false`
//! (default true) says this endpoint offers no rexec at all.

use http::header;
use lambda_http::Request;
use url::Url;

use crate::config::{ConfigError, Vars};
use crate::http::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentApi {
    pub enabled: bool,
    pub url: Option<Url>,
}

impl DeploymentApi {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: vars.bool_or("REXEC_ENABLED", true)?,
            url: vars.url("REXEC_DEPLOYMENT_API_URL")?,
        })
    }

    /// The Deployment API's base URL for a client that reached us with `req`.
    pub fn url_for(&self, req: &Request) -> Result<String, ApiError> {
        if let Some(url) = &self.url {
            return Ok(url.as_str().trim_end_matches('/').to_owned());
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .filter(|h| is_host(h))
            .ok_or_else(|| ApiError::bad_request("bad_host", "The request names no valid Host."))?;
        let scheme = match req.headers().get("x-forwarded-proto").and_then(|p| p.to_str().ok()) {
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            _ => "https",
        };
        Ok(format!("{scheme}://{host}/rexec"))
    }
}

/// A host name or address with an optional port, nothing else.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use lambda_http::Body;

    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = http::Request::builder().uri("/api/status/rexec");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::Empty).unwrap()
    }

    #[test]
    fn configured_url_wins_without_trailing_slash() {
        let api = DeploymentApi::from_vars(&Vars::from_pairs([(
            "REXEC_DEPLOYMENT_API_URL",
            "https://x.org/rexec/",
        )]))
        .unwrap();
        assert_eq!(
            api.url_for(&request(&[("host", "other")])).unwrap(),
            "https://x.org/rexec"
        );
    }

    #[test]
    fn derived_from_the_host() {
        let api = DeploymentApi::from_vars(&Vars::default()).unwrap();
        assert!(api.enabled);
        assert_eq!(
            api.url_for(&request(&[("host", "abc.execute-api.us-east-1.amazonaws.com")]))
                .unwrap(),
            "https://abc.execute-api.us-east-1.amazonaws.com/rexec"
        );
        assert_eq!(
            api.url_for(&request(&[("host", "127.0.0.1:9000"), ("x-forwarded-proto", "http")]))
                .unwrap(),
            "http://127.0.0.1:9000/rexec"
        );
        assert_eq!(api.url_for(&request(&[("host", "evil/\"x")])).unwrap_err().status, 400);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = DeploymentApi::from_vars(&Vars::from_pairs([("REXEC_DEPLOYMENT_API_URL", "not a url")])).unwrap_err();
        assert_eq!(err.variable, "REXEC_DEPLOYMENT_API_URL");
    }
}
