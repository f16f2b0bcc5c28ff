//! Stand-ins for the services rexec-lambda talks to and that no machine here runs, each on
//! 127.0.0.1: the Kubernetes API server ([`kube`]) and the identity service at `AUTH_API_URL`
//! ([`identity_service`]). `make dev`, the bench and the Python tests run them as the
//! `kube-stand-in` and `identity-service` binaries; the Rust tests start them in-process.

pub mod identity_service;
pub mod kube;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves `app` on 127.0.0.1:`port` (0: any free port) until the task is aborted.
pub async fn listen(port: u16, app: axum::Router, what: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind the {what}: {e}"));
    let addr = listener.local_addr().expect("a bound address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    });
    (addr, task)
}
