//! `check-cluster`: before `scripts/dev` starts the functions on a cluster it was given
//! (`KUBECONFIG`, or `EKS_CLUSTER_NAME` and `AWS_REGION`), checks with the functions' own
//! settings and code that the cluster answers each of them as they will act, and that the
//! service's manifests are installed; says which command installs what is missing. One line per
//! check on stderr; exit status 1 at the first that fails.
//!
//! - the API server answers each function (as its impersonated group with `KUBE_AS_FUNCTION`,
//!   as the context named after it, or as the kubeconfig's user);
//! - each function's group holds its permissions (`deploy/k8s/rbac.yaml`);
//! - the environments' namespace exists (`deploy/k8s/environments.yaml`);
//! - a write outside rexec-lambda's namespaces is refused (`deploy/k8s/admission-policy.yaml`),
//!   when the functions act as their groups: the policies judge those groups only.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, UserInfo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::{Client, core::ObjectMeta};
use rexec_shared::cluster::Cluster;
use rexec_shared::cluster::kubeconfig::FUNCTION_GROUPS;
use rexec_shared::config::Vars;

const RBAC: &str = "kubectl apply --server-side -f deploy/k8s/rbac.yaml";
const ADMISSION: &str = "kubectl apply --server-side -f deploy/k8s/admission-policy.yaml";
const ENVIRONMENTS: &str = "kubectl apply --server-side -f deploy/k8s/environments.yaml (its storage class first: deploy/k8s/dev/ on kind or minikube)";

/// One permission each function's group has: (verb, resource, namespace).
fn permission(function: &str, vars: &Vars) -> (&'static str, &'static str, Option<String>) {
    match function {
        "spawn-server" => ("create", "pods", None),
        "delete-server" => ("delete", "pods", None),
        "get-server" => ("get", "configmaps", None),
        "get-broker-config" => (
            "get",
            "services",
            Some(vars.get("REXEC_BROKER_NAMESPACE").unwrap_or("rexec").to_owned()),
        ),
        "list-servers" => ("list", "configmaps", None),
        _ => ("delete", "namespaces", None),
    }
}

fn fail(message: String) -> ! {
    eprintln!("check-cluster: {message}");
    std::process::exit(1);
}

async fn client_of(function: &str) -> Client {
    let vars = Vars::from_env().with("AWS_LAMBDA_FUNCTION_NAME", function);
    let cluster = Cluster::from_vars(&vars).unwrap_or_else(|e| fail(format!("{}: {}", e.variable, e.reason)));
    match cluster.client().await {
        Ok(client) => client,
        Err(e) => fail(format!(
            "{function} cannot reach the cluster: {e} (the line above says why)"
        )),
    }
}

async fn who(client: &Client) -> UserInfo {
    let review = SelfSubjectReview::default();
    let answered = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| fail(format!("the cluster does not say who the functions are: {e}")));
    answered.status.and_then(|s| s.user_info).unwrap_or_default()
}

async fn allowed(client: &Client, (verb, resource, namespace): (&str, &str, Option<String>)) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                namespace,
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answered = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| fail(format!("the cluster does not answer an access review: {e}")));
    answered.status.is_some_and(|s| s.allowed)
}

/// Whether the admission policies refuse a write of `client`'s outside rexec-lambda's
/// namespaces (a dry run: nothing is written).
async fn outside_writes_refused(client: &Client) -> bool {
    let probe = ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("rexec-check-".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&params, &probe)
        .await
    {
        Err(kube::Error::Api(status)) => status.message.contains("rexec-lambda writes only in namespaces"),
        _ => false,
    }
}

#[tokio::main]
async fn main() {
    // The functions' own log lines (why a kubeconfig cannot be used), on stderr.
    let _ = tracing::subscriber::set_global_default(rexec_shared::http::logging::subscriber(std::io::stderr));
    let vars = Vars::from_env();
    let spawn = client_of("spawn-server").await;
    let version = spawn
        .apiserver_version()
        .await
        .unwrap_or_else(|e| fail(format!("the API server does not answer: {e}")));
    let user = who(&spawn).await;
    let groups = user.groups.unwrap_or_default();
    eprintln!(
        "check-cluster: Kubernetes {}.{} answers spawn-server as {} ({})",
        version.major,
        version.minor,
        user.username.unwrap_or_default(),
        groups.join(", ")
    );
    for (function, group) in FUNCTION_GROUPS {
        let client = client_of(function).await;
        if !allowed(&client, permission(function, &vars)).await {
            fail(format!("{function} ({group}) lacks its permissions: {RBAC}"));
        }
    }
    eprintln!("check-cluster: each function holds its permissions");
    let environments = vars.get("REXEC_ENV_NAMESPACE").unwrap_or("rexec-environments");
    if Api::<Namespace>::all(spawn.clone())
        .get_opt(environments)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        fail(format!("the namespace {environments} is missing: {ENVIRONMENTS}"));
    }
    eprintln!("check-cluster: the namespace {environments} is there");
    if groups.iter().any(|g| g.starts_with("rexec-lambda-")) {
        if !outside_writes_refused(&spawn).await {
            fail(format!("the admission policies are missing: {ADMISSION}"));
        }
        eprintln!("check-cluster: the admission policies are installed");
    } else {
        eprintln!(
            "check-cluster: the functions act as your own identity, not as their groups: RBAC and admission will not refuse what they refuse on Lambda (with a kubeconfig, KUBE_AS_FUNCTION=true impersonates the groups)"
        );
    }
}
