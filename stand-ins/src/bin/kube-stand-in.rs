//! The Kubernetes stand-in for local runs: `kube-stand-in [PORT] [KUBECONFIG_PATH]`.
//!
//! Writes a kubeconfig pointing at it with the bearer token `local`, which every request must
//! carry (default: a new file in the temp directory, removed on SIGINT or SIGTERM), seeds a
//! broker Service of type LoadBalancer at 127.0.0.1, prints one JSON line
//! `{"url": ..., "kubeconfig": ...}` once it listens, and serves until stopped. Pods take a
//! couple of seconds to install and become Ready. The metrics API is served (empty: no pod
//! reports its usage). `KUBE_STAND_IN_LATENCY_MS` delays every answer
//! by that much (the benches count round trips with it). With `KUBE_STAND_IN_EKS_CLUSTER` every
//! request must carry instead an EKS token for that cluster, signed in `AWS_REGION` with
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (the bench reaches it as Lambda reaches EKS).

use std::time::Duration;

use rexec_stand_ins::kube::{Behaviour, Fault, KubeStandIn, TokenCheck};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port = args
        .next()
        .map(|p| p.parse().expect("PORT must be a number"))
        .unwrap_or(0);
    let cluster = KubeStandIn::start_on(port).await;
    // A file of its own is removed when the stand-in stops; a named one is the caller's.
    let (kubeconfig, _own) = match args.next() {
        Some(path) => {
            std::fs::write(&path, cluster.kubeconfig("local")).expect("write the kubeconfig");
            (std::path::PathBuf::from(path), None)
        }
        None => {
            let own = cluster.write_kubeconfig("local");
            (own.to_path_buf(), Some(own))
        }
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    cluster.require_token(match std::env::var("KUBE_STAND_IN_EKS_CLUSTER") {
        Ok(name) => TokenCheck::Eks {
            cluster: name,
            region: var("AWS_REGION"),
            credentials: aws_credential_types::Credentials::new(
                var("AWS_ACCESS_KEY_ID"),
                var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "environment",
            ),
        },
        Err(_) => TokenCheck::Exact("local".into()),
    });
    // The metrics API, as metrics-server serves it on a cluster (no pod reports usage here).
    cluster.install_metrics();
    if let Ok(ms) = std::env::var("KUBE_STAND_IN_LATENCY_MS") {
        let ms = ms.parse().expect("KUBE_STAND_IN_LATENCY_MS must be a number");
        cluster.inject(None, None, Fault::Latency(Duration::from_millis(ms)), None);
    }
    cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(3),
        start_time: Duration::from_secs(1),
        namespace_termination: Duration::from_secs(2),
        ..Behaviour::default()
    });
    cluster.put(
        "services",
        json!({
            "metadata": {"name": "rexec-broker", "namespace": "rexec"},
            "spec": {"type": "LoadBalancer", "ports": [
                {"name": "server", "port": 5560, "protocol": "TCP"},
                {"name": "client", "port": 5559, "protocol": "TCP"},
            ]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}},
        }),
    );
    println!("{}", json!({"url": cluster.url(), "kubeconfig": kubeconfig}));
    let mut terminate = signal(SignalKind::terminate()).expect("listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
