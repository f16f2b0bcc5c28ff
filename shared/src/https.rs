//! The HTTPS client of the calls a function makes (identity providers, the AWS API): rustls with
//! aws-lc-rs, Mozilla's certificate authorities compiled in, a whole-call timeout and no
//! redirects (a redirect from an identity endpoint or the AWS API is a misconfiguration, and
//! following it would resend a token or a signature). The cluster's client
//! ([`crate::cluster`]) uses the same TLS settings with its own certificate authority.

use std::sync::Arc;
use std::time::Duration;

/// Whether a URL of `scheme` and `host` may carry a token or a signature: `https`, or `http` to
/// the loopback interface only (a local cluster or AWS stand-in).
pub fn secure_or_loopback(scheme: &str, host: Option<&str>) -> bool {
    let loopback = host.is_some_and(|host| {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    scheme == "https" || (scheme == "http" && loopback)
}

/// A client whose every call, connection included, ends within `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls(public_roots())?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rexec-lambda/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// TLS with the one crypto provider (aws-lc-rs), its safe protocol versions, servers checked
/// against `roots`.
pub fn tls(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The certificate authorities servers are checked against: Mozilla's, compiled in
/// (webpki-roots). Reading the system's bundle instead (some 150 certificates, parsed, at every
/// cold start) took most of a function's init.
pub fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_the_loopback_interface() {
        for (scheme, host, allowed) in [
            ("https", Some("eks.example.org"), true),
            ("http", Some("127.0.0.1"), true),
            ("http", Some("127.8.0.2"), true),
            ("http", Some("[::1]"), true),
            ("http", Some("localhost"), true),
            ("http", Some("eks.example.org"), false),
            ("http", Some("10.0.0.1"), false),
            ("http", Some("localhost.example.org"), false),
            ("http", None, false),
            ("ftp", Some("127.0.0.1"), false),
        ] {
            assert_eq!(secure_or_loopback(scheme, host), allowed, "{scheme}://{host:?}");
        }
    }

    #[test]
    fn calls_out_trust_the_public_certificate_authorities() {
        let roots = public_roots();
        assert!(roots.len() > 100, "{} roots", roots.len());
        let isrg = roots
            .roots
            .iter()
            .any(|anchor| anchor.subject.windows(12).any(|w| w == b"ISRG Root X1"));
        assert!(isrg, "Let's Encrypt's root is trusted");
        let amazon = roots
            .roots
            .iter()
            .any(|anchor| anchor.subject.windows(16).any(|w| w == b"Amazon Root CA 1"));
        assert!(amazon, "the AWS API's root is trusted");
        assert!(client(Duration::from_secs(1)).is_ok());
    }
}
