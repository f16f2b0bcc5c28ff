//! The cluster's client over TLS, as an EKS cluster is reached: the stand-in behind a TLS
//! listener whose certificate only the kubeconfig's certificate authority vouches for.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use rcgen::CertifiedKey;
use rexec_shared::cluster::{Cluster, ClusterError};
use rexec_shared::config::Vars;
use rexec_stand_ins::kube::{KubeStandIn, KubeconfigFile, TokenCheck};
use rustls::pki_types::PrivateKeyDer;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A certificate for 127.0.0.1 and localhost, signed by itself.
fn certificate() -> CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap()
}

/// A TLS listener on 127.0.0.1 presenting `certified`, handing each connection, decrypted, to
/// `upstream`.
async fn tls_front(upstream: SocketAddr, certified: &CertifiedKey<rcgen::KeyPair>) -> SocketAddr {
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

struct Kubeconfig(KubeconfigFile);

impl Kubeconfig {
    fn write(server: &str, ca_pem: Option<&str>, token: &str) -> Self {
        let mut cluster = json!({"server": server});
        if let Some(pem) = ca_pem {
            cluster["certificate-authority-data"] = Value::String(STANDARD.encode(pem));
        }
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "tls",
            "clusters": [{"name": "tls", "cluster": cluster}],
            "users": [{"name": "tls", "user": {"token": token}}],
            "contexts": [{"name": "tls", "context": {"cluster": "tls", "user": "tls"}}],
        });
        Self(KubeconfigFile::write(&config.to_string()))
    }

    async fn list_namespaces(&self) -> Result<usize, ClusterError> {
        let cluster = Cluster::from_vars(&Vars::from_pairs([("KUBECONFIG", self.0.to_str().unwrap())])).unwrap();
        let namespaces: Api<Namespace> = Api::all(cluster.client().await?);
        Ok(namespaces.list(&ListParams::default()).await?.items.len())
    }
}

#[tokio::test]
async fn the_api_server_is_trusted_only_through_the_clusters_certificate_authority() {
    let cluster = KubeStandIn::start().await;
    cluster.require_token(TokenCheck::Exact("tls-token".into()));
    let upstream: SocketAddr = cluster.url().trim_start_matches("http://").parse().unwrap();
    let certified = certificate();
    let front = tls_front(upstream, &certified).await;
    let server = format!("https://127.0.0.1:{}", front.port());
    let ca = certified.cert.pem();

    let trusted = Kubeconfig::write(&server, Some(&ca), "tls-token");
    let before = cluster.requests();
    assert!(trusted.list_namespaces().await.is_ok());
    assert_eq!(cluster.requests(), before + 1, "the call went through the TLS listener");

    let wrong_token = Kubeconfig::write(&server, Some(&ca), "other-token");
    assert_eq!(
        wrong_token.list_namespaces().await.err(),
        Some(ClusterError::Unavailable("the API server answered 401".into())),
        "the token is what the stand-in checks"
    );

    // Neither Mozilla's authorities nor another certificate's vouch for this server.
    let public_roots = Kubeconfig::write(&server, None, "tls-token");
    let other_ca = Kubeconfig::write(&server, Some(&certificate().cert.pem()), "tls-token");
    let before = cluster.requests();
    for refused in [public_roots, other_ca] {
        let err = refused.list_namespaces().await.err().unwrap();
        assert!(matches!(err, ClusterError::Unavailable(_)), "{err:?}");
    }
    assert_eq!(cluster.requests(), before, "no request reached the API server");
}
