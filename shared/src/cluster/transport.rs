//! The HTTP stack to the API server: rustls trusting the cluster's CA, a budget for connecting
//! and for each read and write, the bearer token as a sensitive header, the API server's base
//! URL, each call timed.
//!
//! kube's own stack (`ClientBuilder::try_from(Config)`) links the kubeconfig authentication
//! plugins (exec and auth-provider, with a YAML parser for their output and a JSONPath engine),
//! a megabyte of every function that reaches the cluster, for credentials the Lambda functions
//! never have: an EKS token is all they send. Builds with the `local` feature use it for a
//! kubeconfig ([`from_config`]), with the same budget and timing.

use std::task::{Context, Poll};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::Client;
use kube::client::Body;
use kube::client::middleware::BaseUriLayer;
use secrecy::ExposeSecret;
use tower::ServiceBuilder;
use tower::layer::layer_fn;

use super::Access;
use crate::https;
use crate::metrics::{self, Metric};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client of the API server `access` names; connecting, and each read and write of a call,
/// must end within `timeout`.
pub fn client(access: Access, timeout: Duration) -> Result<Client, String> {
    let roots = if access.ca.is_empty() {
        https::public_roots()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for der in access.ca {
            roots
                .add(der.into())
                .map_err(|e| format!("the cluster's certificate authority is unusable: {e}"))?;
        }
        roots
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(https::tls(roots)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(Some(timeout));
    connector.set_read_timeout(Some(timeout));
    connector.set_write_timeout(Some(timeout));
    let http_client = hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let authorization = access.token.as_ref().map(bearer).transpose()?;
    let service = ServiceBuilder::new()
        .layer(BaseUriLayer::new(access.url))
        .map_request(move |mut request: Request<Body>| {
            if let Some(value) = &authorization {
                request.headers_mut().insert(AUTHORIZATION, value.clone());
            }
            request
        })
        .layer(layer_fn(Timed))
        .map_err(BoxError::from)
        .service(http_client);
    Ok(Client::new(service, "default"))
}

/// kube's own client of `config`, with the same budget, no retries and each call timed.
#[cfg(feature = "local")]
pub fn from_config(mut config: kube::Config, timeout: Duration) -> Result<Client, String> {
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| super::error::describe(&e))?;
    Ok(builder.with_layer(&layer_fn(Timed)).build())
}

/// `Bearer <token>`, marked sensitive (never printed by the HTTP stack's own logs).
fn bearer(token: &secrecy::SecretString) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
        .map_err(|_| "the cluster token is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Times each call to the API server (`ClusterLatency`, see [`crate::metrics`]).
#[derive(Clone)]
struct Timed<S>(S);

impl<S: tower::Service<R>, R> tower::Service<R> for Timed<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = metrics::Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        metrics::Timed::new(self.0.call(request), Metric::ClusterLatency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_a_sensitive_bearer_header() {
        let value = bearer(&"abc".into()).unwrap();
        assert_eq!(value, "Bearer abc");
        assert!(value.is_sensitive());
        assert!(bearer(&"a\nb".into()).is_err(), "a token cannot add a header");
    }

    #[test]
    fn a_certificate_authority_that_is_not_a_certificate_is_refused() {
        let access = Access {
            url: "https://cluster.example".parse().unwrap(),
            ca: vec![vec![0, 1, 2, 3]],
            token: None,
        };
        let err = client(access, Duration::from_secs(1)).err().unwrap();
        assert!(err.contains("certificate authority"), "{err}");
    }
}
