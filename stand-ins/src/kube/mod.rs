//! A stand-in for the Kubernetes API server, on 127.0.0.1: [`api`] (routes), [`status`] (the
//! request target and Status bodies),
//! [`store`] (objects, selectors, merge, apply), [`watch`] (streams of changes), [`quota`]
//! (ResourceQuota admission),
//! [`kubelet`] (pods and namespaces over time) and [`auth`] (tokens and RBAC).
//!
//! No API server installs on these machines, so the tests and the local stack use this one. It
//! serves the paths rexec-lambda calls with the API's conventions, not the conveniences of our
//! code:
//! - objects kept by resource, namespace and name, with `uid`, `creationTimestamp` and a
//!   cluster-wide `resourceVersion`; `Status` objects with `reason`, `code` and `details` for
//!   every error: 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale `resourceVersion`,
//!   422 Invalid for a bad name, 403 Forbidden for content created in a terminating namespace;
//! - list and watch with label selectors (equality- and set-based) and field selectors (see
//!   [`watch`]);
//! - `PUT` (optimistic concurrency), JSON merge `PATCH` and server-side apply (a field manager
//!   required; created when absent; unchanged objects keep their `resourceVersion`);
//! - ResourceQuota object counts (`pods`, `configmaps`, `count/<kind>`): a creation beyond them is
//!   403 "exceeded quota";
//! - namespace deletion: the namespace turns `Terminating`, a second delete answers 409, and
//!   after a delay it is removed with everything in it;
//! - pods whose status advances with time (init containers, then Running and Ready) or fails
//!   (image pull error, pip install failure, crash loop, out of memory), with Events;
//! - an optional bearer-token check (a fixed token, or a well-formed EKS token);
//! - RBAC, once enforced: grants per bearer token, cluster-wide or in one namespace, and 403
//!   Forbidden for anything else; the permissions each token used are recorded;
//! - injected faults (latency, 5xx, dropped connections, RBAC refusals), a request counter
//!   per method and resource, and the round trips a client made one after another (also
//!   `GET /stand-in/round-trips`, with the requests by verb and resource, and `DELETE` to forget
//!   them, for the benches, outside the API's paths).

mod api;
mod auth;
mod kubelet;
mod quota;
mod status;
mod store;
mod verbs;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use auth::{Grant, Permission, TokenCheck};
pub use kubelet::{Behaviour, INSTALL_FAILURE};
pub use store::PodOutcome;
use store::Store;

/// A fault injected into matching requests.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Wait, then answer normally.
    Latency(Duration),
    /// Answer this status (5xx) with a Status body.
    Status(u16),
    /// Close the connection without an answer.
    Drop,
    /// Answer 403 as RBAC does: the caller may not do this.
    Forbidden,
    /// Answer 403 as the ServiceAccount admission plug-in does in a namespace whose default
    /// service account the controller manager has not made yet.
    NoServiceAccountYet,
}

#[derive(Debug, Clone)]
struct FaultRule {
    method: Option<Method>,
    resource: Option<String>,
    fault: Fault,
    remaining: Option<usize>,
}

/// One request: when it came, and when its answer began.
struct Call {
    /// The verb and the resource, as RBAC names them (`create pods`).
    what: String,
    watch: bool,
    started: Instant,
    answered: Instant,
}

/// The requests made since [`KubeStandIn::forget_calls`]: how many, and how many of them one after
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTrips {
    pub calls: usize,
    /// The longest chain of requests each made after the previous one was answered: what a
    /// client waited for in sequence. Requests in flight together count once. Watches are left
    /// out: they are a wait, not a round trip.
    pub in_sequence: usize,
}

struct Shared {
    store: Mutex<Store>,
    behaviour: Mutex<Behaviour>,
    faults: Mutex<Vec<FaultRule>>,
    counters: Mutex<BTreeMap<String, usize>>,
    calls: Mutex<Vec<Call>>,
    /// The permissions each bearer token used.
    permissions: Mutex<BTreeMap<String, BTreeSet<Permission>>>,
    /// RBAC: what each bearer token may do, once enforced.
    grants: Mutex<Option<HashMap<String, Vec<Grant>>>>,
    token: Mutex<TokenCheck>,
}

pub struct KubeStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl KubeStandIn {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Self {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            behaviour: Mutex::new(Behaviour::default()),
            faults: Mutex::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
            permissions: Mutex::new(BTreeMap::new()),
            grants: Mutex::new(None),
            token: Mutex::new(TokenCheck::Any),
        });
        let app = Router::new()
            .route("/stand-in/round-trips", get(round_trips_now).delete(forget_calls_now))
            .fallback(api::serve)
            .with_state(shared.clone());
        let (addr, task) = crate::listen(port, app, "Kubernetes stand-in").await;
        let stand_in = Self { addr, shared, task };
        // What deploy/k8s/environments.yaml makes: the namespace of the environments' builds,
        // and its writable claim of the shared volume.
        stand_in.put(
            "namespaces",
            json!({"metadata": {"name": "rexec-environments", "labels": {"app.kubernetes.io/managed-by": "rexec-lambda"}},
                "status": {"phase": "Active"}}),
        );
        stand_in.put(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "rexec-environments", "namespace": "rexec-environments"},
                "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "rexec-environments", "resources": {"requests": {"storage": "100Gi"}}},
                "status": {"phase": "Bound"}}),
        );
        stand_in.put(
            "nodes",
            json!({"metadata": {"name": "node-1"}, "status": {"addresses": [
                {"type": "InternalIP", "address": "10.0.0.11"}, {"type": "ExternalIP", "address": "203.0.113.11"}
            ]}}),
        );
        stand_in
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig that points at this stand-in with `token`, in JSON (which YAML readers
    /// read too; the functions read no YAML).
    pub fn kubeconfig(&self, token: &str) -> String {
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url()}}],
            "users": [{"name": "stand-in", "user": {"token": token}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}],
            "current-context": "stand-in",
        })
        .to_string()
    }

    /// Writes [`Self::kubeconfig`] to a new file in the temp directory, removed when the
    /// returned value is dropped.
    pub fn write_kubeconfig(&self, token: &str) -> KubeconfigFile {
        KubeconfigFile::write(&self.kubeconfig(token))
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        *self.shared.behaviour.lock().unwrap()
    }

    pub fn require_token(&self, check: TokenCheck) {
        *self.shared.token.lock().unwrap() = check;
    }

    /// Injects `fault` into requests matching `method` and `resource` (`None` matches all),
    /// for the next `times` of them (`None`: until cleared).
    pub fn inject(&self, method: Option<&str>, resource: Option<&str>, fault: Fault, times: Option<usize>) {
        self.shared.faults.lock().unwrap().push(FaultRule {
            method: method.map(|m| m.parse().unwrap()),
            resource: resource.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Requests served for `method` on `resource` (for example `POST pods`).
    pub fn count(&self, method: &str, resource: &str) -> usize {
        self.shared
            .counters
            .lock()
            .unwrap()
            .get(&format!("{method} {resource}"))
            .copied()
            .unwrap_or(0)
    }

    /// Requests served, of any method and resource.
    pub fn requests(&self) -> usize {
        self.shared.counters.lock().unwrap().values().sum()
    }

    /// Forgets the requests made so far: [`Self::round_trips`] counts from here.
    pub fn forget_calls(&self) {
        self.shared.calls.lock().unwrap().clear();
    }

    /// The requests made since [`Self::forget_calls`], and how many of them were made in
    /// sequence. Inject some latency first (see [`Fault::Latency`]), so that requests made
    /// together are seen in flight together.
    pub fn round_trips(&self) -> RoundTrips {
        round_trips(&self.shared.calls.lock().unwrap())
    }

    /// The permissions the caller with bearer `token` used.
    pub fn permissions_used_by(&self, token: &str) -> BTreeSet<Permission> {
        self.shared
            .permissions
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .unwrap_or_default()
    }

    /// Enforces RBAC from now on: a request is served only when its bearer token holds a grant
    /// for its (API group, resource, verb) in its namespace; anything else is 403 Forbidden.
    pub fn enforce_rbac(&self, grants: HashMap<String, Vec<Grant>>) {
        *self.shared.grants.lock().unwrap() = Some(grants);
    }

    /// Stores an object as is (for what the cluster holds already: nodes, the broker Service).
    pub fn put(&self, resource: &str, mut object: Value) {
        let mut store = self.shared.store.lock().unwrap();
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("a name")
            .to_owned();
        let (api_version, kind, _) = status::kind_of(resource).expect("a known resource");
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        if object["metadata"].get("creationTimestamp").is_none() {
            object["metadata"]["creationTimestamp"] = json!(store::timestamp(std::time::SystemTime::now()));
        }
        store.insert_new((resource.to_owned(), namespace, name), object);
    }

    /// Deletes an object as a `DELETE` by someone else would (an operator, a reaper): a
    /// namespace starts terminating, a pod stops.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut store = self.shared.store.lock().unwrap();
        let target = status::Target {
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: Some(name.to_owned()),
            group: String::new(),
        };
        verbs::delete(&mut store, &target, name, b"");
    }

    /// Installs the metrics API (metrics-server): from now on it reports the CPU usage set with
    /// [`Self::set_cpu_usage`] of running pods.
    pub fn install_metrics(&self) {
        self.shared
            .store
            .lock()
            .unwrap()
            .cpu_usage
            .get_or_insert_with(Default::default);
    }

    /// The CPU usage the metrics API reports for a pod (`"3m"`, `"250000n"`, `"1"`).
    pub fn set_cpu_usage(&self, namespace: &str, pod: &str, cpu: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .cpu_usage
            .get_or_insert_with(Default::default)
            .insert((namespace.to_owned(), pod.to_owned()), cpu.to_owned());
    }

    /// Appends `text` to what `container` of a pod printed, as the container itself would.
    pub fn write_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        let mut store = self.shared.store.lock().unwrap();
        let pod = store
            .pods
            .get_mut(&(namespace.to_owned(), pod.to_owned()))
            .expect("a pod the kubelet runs");
        pod.logs.entry(container.to_owned()).or_default().push_str(text);
    }

    /// The object as the cluster holds it now.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut store = self.shared.store.lock().unwrap();
        verbs::settle(&mut store, &self.behaviour());
        store
            .objects
            .get(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object the cluster holds now.
    pub fn objects(&self) -> Vec<Value> {
        let mut store = self.shared.store.lock().unwrap();
        verbs::settle(&mut store, &self.behaviour());
        store.objects.values().cloned().collect()
    }

    /// Names of the objects of `resource` in `namespace`.
    pub fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        let mut store = self.shared.store.lock().unwrap();
        verbs::settle(&mut store, &self.behaviour());
        store
            .objects
            .keys()
            .filter(|(r, ns, _)| r == resource && ns == namespace)
            .map(|(_, _, n)| n.clone())
            .collect()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn round_trips(calls: &[Call]) -> RoundTrips {
    let mut spans: Vec<(Instant, Instant)> = calls
        .iter()
        .filter(|c| !c.watch)
        .map(|c| (c.started, c.answered))
        .collect();
    // The most requests no two of which were in flight together: earliest answer first.
    spans.sort_by_key(|&(_, answered)| answered);
    let mut in_sequence = 0;
    let mut free_from = None;
    for (started, answered) in spans {
        if free_from.is_none_or(|t| started >= t) {
            in_sequence += 1;
            free_from = Some(answered);
        }
    }
    RoundTrips {
        calls: calls.len(),
        in_sequence,
    }
}

/// The round trips, and the requests by verb and resource.
async fn round_trips_now(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let calls = shared.calls.lock().unwrap();
    let trips = round_trips(&calls);
    let mut by_request = BTreeMap::<&str, usize>::new();
    for call in calls.iter() {
        *by_request.entry(&call.what).or_default() += 1;
    }
    Json(json!({"calls": trips.calls, "in_sequence": trips.in_sequence, "by_request": by_request}))
}

async fn forget_calls_now(State(shared): State<Arc<Shared>>) {
    shared.calls.lock().unwrap().clear();
}

impl Drop for KubeStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig in a new file of the temp directory; dropping it removes the file.
pub struct KubeconfigFile(std::path::PathBuf);

impl KubeconfigFile {
    pub fn write(config: &str) -> Self {
        let path = std::env::temp_dir().join(format!("rexec-stand-in-{}.kubeconfig", uuid::Uuid::new_v4()));
        std::fs::write(&path, config).expect("write the kubeconfig");
        Self(path)
    }
}

impl std::ops::Deref for KubeconfigFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for KubeconfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_kubeconfig_is_removed_with_its_value() {
        let cluster = KubeStandIn::start().await;
        let file = cluster.write_kubeconfig("t");
        let path = file.to_path_buf();
        let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["clusters"][0]["cluster"]["server"], cluster.url());
        drop(file);
        assert!(!path.exists(), "{} is left behind", path.display());
    }
}
