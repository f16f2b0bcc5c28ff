//! The services a function talks to, started together for a test: the identity service and
//! the Kubernetes stand-in, with the settings that point a function at them.

use rexec_shared::config::Vars;
use rexec_shared::identity::Identity;
use serde_json::json;

use rexec_stand_ins::identity_service::{IdentityService, dev_users};
use rexec_stand_ins::kube::{KubeStandIn, KubeconfigFile};

/// `REXEC_SERVER_SOURCE_SHA256` for the stand-in, whose pods run nothing: no source is fetched.
pub const UNFETCHED_SOURCE_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `REXEC_SERVER_IMAGE_DIGESTS` for clusters that pull no image (the stand-in, kwok's nodes):
/// a digest of zeros for each default interpreter.
pub const UNPULLED_IMAGE_DIGESTS: &str = "3.10=sha256:0000000000000000000000000000000000000000000000000000000000000000,\
3.11=sha256:0000000000000000000000000000000000000000000000000000000000000000,\
3.12=sha256:0000000000000000000000000000000000000000000000000000000000000000,\
3.13=sha256:0000000000000000000000000000000000000000000000000000000000000000";

pub struct Stack {
    pub identity: IdentityService,
    pub cluster: KubeStandIn,
    pub kubeconfig: KubeconfigFile,
}

impl Stack {
    pub async fn start() -> Self {
        let identity = IdentityService::start(dev_users()).await;
        let cluster = KubeStandIn::start().await;
        let kubeconfig = cluster.write_kubeconfig("stand-in-token");
        Self {
            identity,
            cluster,
            kubeconfig,
        }
    }

    /// Settings for a function: the identity service, the allowed group of the development
    /// users, the stand-in's kubeconfig, the server source's SHA-256, then `extra`.
    pub fn vars(&self, extra: &[(&str, &str)]) -> Vars {
        let url = self.identity.url();
        let mut pairs = vec![
            ("AUTH_API_URL", url.as_str()),
            ("GROUP_NAMES", "/ndp_ep/ep-dev"),
            ("KUBECONFIG", self.kubeconfig.to_str().unwrap()),
            ("KUBE_TIMEOUT_SECONDS", "2"),
            ("REXEC_SERVER_SOURCE_SHA256", UNFETCHED_SOURCE_SHA256),
            ("REXEC_SERVER_IMAGE_DIGESTS", UNPULLED_IMAGE_DIGESTS),
        ];
        pairs.extend_from_slice(extra);
        Vars::from_pairs(pairs)
    }

    /// The broker's Service, exposed as `kind` (`LoadBalancer` with an address, or `NodePort`).
    pub fn add_broker_service(&self, kind: &str) {
        let mut service = json!({
            "metadata": {"name": "rexec-broker", "namespace": "rexec"},
            "spec": {"type": kind, "ports": [
                {"name": "server", "port": 5560, "protocol": "TCP"},
                {"name": "client", "port": 5559, "protocol": "TCP", "nodePort": 30559},
            ]},
        });
        if kind == "LoadBalancer" {
            service["status"] = json!({"loadBalancer": {"ingress": [{"hostname": "broker-123.elb.example.com"}]}});
        }
        self.cluster.put("services", service);
    }
}

/// A caller known by `sub` alone, as a validated token gives it.
pub fn caller(sub: &str) -> Identity {
    Identity {
        sub: sub.into(),
        username: sub.into(),
        roles: vec![],
        groups: vec![],
        client: None,
        expires_at: None,
    }
}
