//! A stand-in for the Kubernetes API server, on 127.0.0.1.
//!
//! No API server installs on these machines, so the tests and the local stack use this one. It
//! serves the paths rexec-lambda calls with the API's conventions, not the conveniences of our
//! code:
//! - objects kept by resource, namespace and name, with `uid`, `creationTimestamp` and a
//!   cluster-wide `resourceVersion`; `Status` objects with `reason`, `code` and `details` for
//!   every error: 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale `resourceVersion`,
//!   422 Invalid for a bad name, 403 Forbidden for content created in a terminating namespace;
//! - list with equality-based label selectors and field selectors;
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
//! - injected faults (latency, 5xx, dropped connections, RBAC refusals) and a request counter
//!   per method and resource.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a pod created from now on behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOutcome {
    /// Init containers finish, the server runs and is Ready.
    Ready,
    /// The image cannot be pulled (`ErrImagePull`, then `ImagePullBackOff`).
    ImagePullError,
    /// The `install` init container (pip) exits 1 and backs off.
    InstallFails,
    /// The server container exits 1 and backs off (`CrashLoopBackOff`).
    CrashLoop,
    /// The server container is killed for memory (`OOMKilled`).
    OutOfMemory,
}

/// Timing and outcomes of the simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// How long a deleted namespace stays `Terminating`.
    pub namespace_termination: Duration,
    /// How long a deleted pod stays before it is gone.
    pub pod_termination: Duration,
    /// How long the init containers (fetch and pip install) run.
    pub install_time: Duration,
    /// How long the server takes to become Ready once running.
    pub start_time: Duration,
    pub pod_outcome: PodOutcome,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            // Long enough that a test sees each stage even on a loaded machine.
            namespace_termination: Duration::from_secs(2),
            pod_termination: Duration::from_millis(100),
            install_time: Duration::from_secs(1),
            start_time: Duration::from_millis(200),
            pod_outcome: PodOutcome::Ready,
        }
    }
}

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
}

#[derive(Debug, Clone)]
struct FaultRule {
    method: Option<Method>,
    resource: Option<String>,
    fault: Fault,
    remaining: Option<usize>,
}

/// What the bearer token of every request must be.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    Any,
    Exact(String),
    /// An EKS token for `cluster`: a presigned STS GetCallerIdentity URL for `region`, signed
    /// less than 15 minutes ago with `credentials` over the header `x-k8s-aws-id: <cluster>`.
    Eks {
        cluster: String,
        region: String,
        credentials: aws_credential_types::Credentials,
    },
}

/// (API group, resource, RBAC verb).
pub type Permission = (String, String, String);

/// An RBAC rule as a ClusterRole (any namespace) or a Role (`namespace`) grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permission: Permission,
    pub namespace: Option<String>,
}

struct Pod {
    created: Instant,
    outcome: PodOutcome,
    /// The image of each container, by name, as container statuses report it.
    images: HashMap<String, String>,
    deleted: Option<Instant>,
    /// The last status written, so each change is written (and announced by an Event) once.
    shown: &'static str,
}

#[derive(Default)]
struct Store {
    version: u64,
    objects: BTreeMap<(String, String, String), Value>,
    pods: HashMap<(String, String), Pod>,
    terminating: HashMap<String, Instant>,
}

struct Shared {
    store: Mutex<Store>,
    behaviour: Mutex<Behaviour>,
    faults: Mutex<Vec<FaultRule>>,
    counters: Mutex<BTreeMap<String, usize>>,
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
            permissions: Mutex::new(BTreeMap::new()),
            grants: Mutex::new(None),
            token: Mutex::new(TokenCheck::Any),
        });
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the Kubernetes stand-in");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("Kubernetes stand-in");
        });
        let stand_in = Self { addr, shared, task };
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

    /// A kubeconfig that points at this stand-in with `token`.
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\nusers:\n- name: stand-in\n  user:\n    token: {token}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: stand-in\ncurrent-context: stand-in\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig`] to a new file and returns its path.
    pub fn write_kubeconfig(&self, token: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("rexec-stand-in-{}.kubeconfig", uuid::Uuid::new_v4()));
        std::fs::write(&path, self.kubeconfig(token)).expect("write the kubeconfig");
        path
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
        store.version += 1;
        let (api_version, kind, _) = kind_of(resource).expect("a known resource");
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["resourceVersion"] = json!(store.version.to_string());
        object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        store.objects.insert((resource.to_owned(), namespace, name), object);
    }

    /// The object as the cluster holds it now.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut store = self.shared.store.lock().unwrap();
        advance(&mut store, &self.behaviour());
        store
            .objects
            .get(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object the cluster holds now.
    pub fn objects(&self) -> Vec<Value> {
        let mut store = self.shared.store.lock().unwrap();
        advance(&mut store, &self.behaviour());
        store.objects.values().cloned().collect()
    }

    /// Names of the objects of `resource` in `namespace`.
    pub fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        let mut store = self.shared.store.lock().unwrap();
        advance(&mut store, &self.behaviour());
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

impl Drop for KubeStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (apiVersion, kind, namespaced) of the resources served.
fn kind_of(resource: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match resource {
        "namespaces" => ("v1", "Namespace", false),
        "nodes" => ("v1", "Node", false),
        "configmaps" => ("v1", "ConfigMap", true),
        "pods" => ("v1", "Pod", true),
        "services" => ("v1", "Service", true),
        "events" => ("v1", "Event", true),
        "resourcequotas" => ("v1", "ResourceQuota", true),
        "limitranges" => ("v1", "LimitRange", true),
        "networkpolicies" => ("networking.k8s.io/v1", "NetworkPolicy", true),
        _ => return None,
    })
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    });
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        json!({"name": name, "kind": resource}),
    )
}

fn object_response(code: StatusCode, object: &Value) -> Response {
    (code, axum::Json(object.clone())).into_response()
}

/// A parsed request path.
struct Target {
    resource: String,
    namespace: String,
    name: Option<String>,
    group: String,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        [resource] => ("", *resource, None),
        ["namespaces", ns, resource] => (*ns, *resource, None),
        ["namespaces", ns, resource, name] => (*ns, *resource, Some(*name)),
        [resource, name] => ("", *resource, Some(*name)),
        _ => return None,
    };
    Some(Target {
        resource: resource.to_owned(),
        namespace: namespace.to_owned(),
        name: name.map(str::to_owned),
        group,
    })
}

/// RFC 1123 label, as the API server checks names: at most 63 lowercase alphanumerics or `-`,
/// alphanumeric at both ends (its own rule, not the code under test's).
fn is_dns_label(s: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).unwrap_or_default();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();

    let Some(target) = parse_path(&path) else {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    };
    *shared
        .counters
        .lock()
        .unwrap()
        .entry(format!("{method} {}", target.resource))
        .or_default() += 1;
    let token = bearer(&headers).to_owned();
    let permission = (
        target.group.clone(),
        target.resource.clone(),
        verb_of(&method, target.name.is_some()).to_owned(),
    );
    shared
        .permissions
        .lock()
        .unwrap()
        .entry(token.clone())
        .or_default()
        .insert(permission.clone());

    if let Err(reason) = check_token(&shared, &token) {
        return status(401, "Unauthorized", format!("Unauthorized: {reason}"), json!({}));
    }
    let granted = shared.grants.lock().unwrap().as_ref().is_none_or(|grants| {
        grants.get(&token).is_some_and(|rules| {
            rules
                .iter()
                .any(|g| g.permission == permission && g.namespace.as_ref().is_none_or(|ns| *ns == target.namespace))
        })
    });
    if !granted {
        return forbidden(&target, &permission.2);
    }
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let hit = faults.iter_mut().position(|rule| {
            rule.method.as_ref().is_none_or(|m| *m == method)
                && rule.resource.as_ref().is_none_or(|r| *r == target.resource)
                && rule.remaining != Some(0)
        });
        hit.map(|i| {
            if let Some(n) = faults[i].remaining.as_mut() {
                *n -= 1;
            }
            faults[i].fault.clone()
        })
    };
    match fault {
        Some(Fault::Latency(wait)) => tokio::time::sleep(wait).await,
        Some(Fault::Status(code)) => {
            return status(
                code,
                "InternalError",
                "Internal error occurred: injected fault".into(),
                json!({}),
            );
        }
        Some(Fault::Drop) => return dropped_connection(),
        Some(Fault::Forbidden) => return forbidden(&target, &permission.2),
        None => {}
    }

    let behaviour = *shared.behaviour.lock().unwrap();
    let mut store = shared.store.lock().unwrap();
    advance(&mut store, &behaviour);
    let Some((api_version, kind, namespaced)) = kind_of(&target.resource) else {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    };
    // A namespaced resource is addressed in a namespace (or listed across all of them); a
    // cluster-scoped one never is.
    let scoped = if namespaced {
        !target.namespace.is_empty() || (method == Method::GET && target.name.is_none())
    } else {
        target.namespace.is_empty()
    };
    if !scoped {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    }

    match (method.clone(), target.name.clone()) {
        (Method::GET, None) => list(&store, &target, &query, api_version, kind),
        (Method::GET, Some(name)) => match store.objects.get(&key(&target, &name)) {
            Some(object) => object_response(StatusCode::OK, object),
            None => not_found(&target.resource, &name),
        },
        (Method::POST, None) => {
            let Ok(object) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not a JSON object".into(), json!({}));
            };
            create(&mut store, &target, &behaviour, object)
        }
        (Method::PUT, Some(name)) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not a JSON object".into(), json!({}));
            };
            let Some(current) = store.objects.get(&key(&target, &name)).cloned() else {
                return not_found(&target.resource, &name);
            };
            if let Some(sent) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                && Some(sent) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            {
                return conflict(&target.resource, &name);
            }
            store.version += 1;
            for field in ["uid", "creationTimestamp", "namespace"] {
                object["metadata"][field] = current["metadata"][field].clone();
            }
            object["metadata"]["resourceVersion"] = json!(store.version.to_string());
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            if target.resource == "pods" || target.resource == "namespaces" {
                object["status"] = current["status"].clone();
            }
            store.objects.insert(key(&target, &name), object.clone());
            object_response(StatusCode::OK, &object)
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let apply = content_type.starts_with("application/apply-patch+yaml");
            if !apply && !content_type.starts_with("application/merge-patch+json") {
                return status(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml (got {content_type})"
                    ),
                    json!({}),
                );
            }
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the body is not JSON".into(), json!({}));
            };
            if apply {
                return server_side_apply(&mut store, &target, &behaviour, &query, &name, patch);
            }
            let Some(mut object) = store.objects.get(&key(&target, &name)).cloned() else {
                return not_found(&target.resource, &name);
            };
            if let Some(sent) = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                && Some(sent) != object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            {
                return conflict(&target.resource, &name);
            }
            merge(&mut object, &patch);
            store.version += 1;
            object["metadata"]["resourceVersion"] = json!(store.version.to_string());
            store.objects.insert(key(&target, &name), object.clone());
            object_response(StatusCode::OK, &object)
        }
        (Method::DELETE, Some(name)) => {
            let Some(mut object) = store.objects.get(&key(&target, &name)).cloned() else {
                return not_found(&target.resource, &name);
            };
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            for (field, meta) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                let wanted = options
                    .pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str);
                let actual = object["metadata"][field].as_str().unwrap_or_default();
                if let Some(wanted) = wanted
                    && wanted != actual
                {
                    return status(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {meta} in precondition: {wanted}, {meta} in object meta: {actual}",
                            target.resource
                        ),
                        json!({"name": name, "kind": target.resource}),
                    );
                }
            }
            match target.resource.as_str() {
                "namespaces" => {
                    if store.terminating.contains_key(&name) {
                        return status(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on namespaces \"{name}\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."
                            ),
                            json!({"name": name, "kind": "namespaces"}),
                        );
                    }
                    store.terminating.insert(name.clone(), Instant::now());
                    store.version += 1;
                    object["metadata"]["deletionTimestamp"] = json!(timestamp(SystemTime::now()));
                    object["metadata"]["resourceVersion"] = json!(store.version.to_string());
                    object["status"] = json!({"phase": "Terminating"});
                    store.objects.insert(key(&target, &name), object.clone());
                    object_response(StatusCode::OK, &object)
                }
                "pods" => {
                    if let Some(pod) = store.pods.get_mut(&(target.namespace.clone(), name.clone()))
                        && pod.deleted.is_none()
                    {
                        pod.deleted = Some(Instant::now());
                    }
                    store.version += 1;
                    if object["metadata"].get("deletionTimestamp").is_none() {
                        object["metadata"]["deletionTimestamp"] = json!(timestamp(SystemTime::now()));
                    }
                    object["metadata"]["resourceVersion"] = json!(store.version.to_string());
                    store.objects.insert(key(&target, &name), object.clone());
                    add_event(
                        &mut store,
                        &target.namespace,
                        &name,
                        "Normal",
                        "Killing",
                        "Stopping container server".into(),
                    );
                    object_response(StatusCode::OK, &object)
                }
                _ => {
                    store.objects.remove(&key(&target, &name));
                    status_success(&target.resource, &name)
                }
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method} {path})"),
            json!({}),
        ),
    }
}

/// Server-side apply (`application/apply-patch+yaml`): a `fieldManager` is required, the body
/// names the object of the URL; an absent object is created (201), a present one takes the
/// applied fields (maps merge, lists replace) and keeps its `resourceVersion` when nothing
/// changed.
fn server_side_apply(
    store: &mut Store,
    target: &Target,
    behaviour: &Behaviour,
    query: &HashMap<String, String>,
    name: &str,
    applied: Value,
) -> Response {
    if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return status(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                .into(),
            json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "field": "fieldManager"}]}),
        );
    }
    let named = applied.pointer("/metadata/name").and_then(Value::as_str);
    if named != Some(name) {
        return status(
            400,
            "BadRequest",
            format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                named.unwrap_or_default()
            ),
            json!({}),
        );
    }
    let Some(current) = store.objects.get(&key(target, name)).cloned() else {
        return create(store, target, behaviour, applied);
    };
    let mut object = current.clone();
    merge(&mut object, &applied);
    if object != current {
        store.version += 1;
        object["metadata"]["resourceVersion"] = json!(store.version.to_string());
        store.objects.insert(key(target, name), object.clone());
    }
    object_response(StatusCode::OK, &object)
}

/// Creates `object` as `POST` does (and an apply of an absent object): the name checked, the
/// namespace present and not terminating, no object of that name yet.
fn create(store: &mut Store, target: &Target, behaviour: &Behaviour, mut object: Value) -> Response {
    let (api_version, kind, namespaced) = kind_of(&target.resource).expect("served resources only");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let valid = if target.resource == "namespaces" {
        is_dns_label(&name)
    } else {
        is_dns_subdomain(&name)
    };
    if !valid {
        return status(
            422,
            "Invalid",
            format!(
                "{kind} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'"
            ),
            json!({"name": name, "kind": kind, "causes": [{"reason": "FieldValueInvalid", "field": "metadata.name"}]}),
        );
    }
    if namespaced {
        match store
            .objects
            .get(&("namespaces".into(), String::new(), target.namespace.clone()))
        {
            None => return not_found("namespaces", &target.namespace),
            Some(_) if store.terminating.contains_key(&target.namespace) => {
                return status(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                        target.resource, target.namespace
                    ),
                    json!({"name": name, "kind": target.resource, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {} is being terminated", target.namespace), "field": "metadata.namespace"}]}),
                );
            }
            Some(_) => {}
        }
    }
    if store.objects.contains_key(&key(target, &name)) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", target.resource),
            json!({"name": name, "kind": target.resource}),
        );
    }
    if let Some(refusal) = quota_refusal(store, target, &name) {
        return refusal;
    }
    store.version += 1;
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = json!(store.version.to_string());
    meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = json!(timestamp(SystemTime::now()));
    if namespaced {
        meta["namespace"] = json!(target.namespace);
    }
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    match target.resource.as_str() {
        "namespaces" => object["status"] = json!({"phase": "Active"}),
        "pods" => {
            object["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]});
            store.pods.insert(
                (target.namespace.clone(), name.clone()),
                Pod {
                    created: Instant::now(),
                    outcome: behaviour.pod_outcome,
                    images: ["initContainers", "containers"]
                        .iter()
                        .flat_map(|list| object["spec"][list].as_array().cloned().unwrap_or_default())
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().to_owned(),
                                c["image"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                    deleted: None,
                    shown: "Pending",
                },
            );
            add_event(
                store,
                &target.namespace,
                &name,
                "Normal",
                "Scheduled",
                format!("Successfully assigned {}/{name} to node-1", target.namespace),
            );
        }
        _ => {}
    }
    store.objects.insert(key(target, &name), object.clone());
    object_response(StatusCode::CREATED, &object)
}

/// 403 as the quota admission answers it when a ResourceQuota of the namespace has no room for
/// one more object of the target's kind (object counts: `pods`, `configmaps`, `count/<kind>`).
fn quota_refusal(store: &Store, target: &Target, name: &str) -> Option<Response> {
    let used = store
        .objects
        .keys()
        .filter(|(r, ns, _)| *r == target.resource && *ns == target.namespace)
        .count();
    store
        .objects
        .iter()
        .filter(|((r, ns, _), _)| r == "resourcequotas" && *ns == target.namespace)
        .find_map(|((_, _, quota), object)| {
            let hard = &object["spec"]["hard"];
            let (resource, limit) = [target.resource.clone(), format!("count/{}", target.resource)]
                .into_iter()
                .find_map(|r| Some((r.clone(), hard[r.as_str()].as_str()?.parse::<usize>().ok()?)))?;
            (used + 1 > limit).then(|| {
                status(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{name}\" is forbidden: exceeded quota: {quota}, requested: {resource}=1, used: {resource}={used}, limited: {resource}={limit}",
                        target.resource
                    ),
                    json!({"name": name, "kind": target.resource}),
                )
            })
        })
}

fn key(target: &Target, name: &str) -> (String, String, String) {
    (target.resource.clone(), target.namespace.clone(), name.to_owned())
}

fn status_success(resource: &str, name: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "kind": resource}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn conflict(resource: &str, name: &str) -> Response {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        json!({"name": name, "kind": resource}),
    )
}

fn verb_of(method: &Method, named: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async { Err::<Bytes, _>(std::io::Error::other("connection dropped")) });
    Response::builder().status(200).body(Body::from_stream(stream)).unwrap()
}

/// 403 as RBAC answers it: the caller may not use `verb` on the target.
fn forbidden(target: &Target, verb: &str) -> Response {
    let message = format!(
        "{} is forbidden: User \"rexec-lambda\" cannot {verb} resource \"{}\" in API group \"{}\"{}",
        target.resource,
        target.resource,
        target.group,
        if target.namespace.is_empty() {
            String::new()
        } else {
            format!(" in the namespace \"{}\"", target.namespace)
        }
    );
    status(
        403,
        "Forbidden",
        message,
        json!({"kind": target.resource, "group": target.group}),
    )
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

fn check_token(shared: &Shared, token: &str) -> Result<(), String> {
    match &*shared.token.lock().unwrap() {
        TokenCheck::Any => Ok(()),
        TokenCheck::Exact(expected) if token == expected => Ok(()),
        TokenCheck::Exact(_) => Err("invalid bearer token".into()),
        TokenCheck::Eks {
            cluster,
            region,
            credentials,
        } => check_eks_token(token, cluster, region, credentials),
    }
}

fn check_eks_token(
    token: &str,
    cluster: &str,
    region: &str,
    credentials: &aws_credential_types::Credentials,
) -> Result<(), String> {
    use base64::Engine;
    let encoded = token.strip_prefix("k8s-aws-v1.").ok_or("not an EKS token")?;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| "not base64url")?;
    let url = url::Url::parse(std::str::from_utf8(&url).map_err(|_| "not UTF-8")?).map_err(|_| "not a URL")?;
    if url.host_str() != Some(&format!("sts.{region}.amazonaws.com")) {
        return Err(format!("not an STS URL of {region}"));
    }
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let get = |k: &str| query.get(k).map(String::as_str).ok_or(format!("no {k}"));
    if get("Action")? != "GetCallerIdentity" {
        return Err("not GetCallerIdentity".into());
    }
    if !get("X-Amz-SignedHeaders")?.split(';').any(|h| h == "x-k8s-aws-id") {
        return Err("the cluster header is not signed".into());
    }
    let date = get("X-Amz-Date")?;
    let signed_at = humantime::parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    ))
    .map_err(|_| "bad X-Amz-Date")?;
    let age = SystemTime::now().duration_since(signed_at).unwrap_or_default();
    if age > Duration::from_secs(15 * 60) {
        return Err("the token has expired".into());
    }
    let expected = rexec_shared::cluster::eks::token(credentials, region, cluster, signed_at)?;
    let expected_url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&expected["k8s-aws-v1.".len()..])
        .unwrap();
    let expected_url = url::Url::parse(std::str::from_utf8(&expected_url).unwrap()).unwrap();
    let expected_signature = expected_url
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned());
    if expected_signature.as_deref() != Some(get("X-Amz-Signature")?) {
        return Err(format!("the signature is not for cluster {cluster}"));
    }
    Ok(())
}

fn list(store: &Store, target: &Target, query: &HashMap<String, String>, api_version: &str, kind: &str) -> Response {
    let labels = match query.get("labelSelector").map(|s| parse_selector(s)).transpose() {
        Ok(labels) => labels.unwrap_or_default(),
        Err(reason) => {
            return status(
                400,
                "BadRequest",
                format!("unable to parse requirement: {reason}"),
                json!({}),
            );
        }
    };
    let fields = match query.get("fieldSelector").map(|s| parse_selector(s)).transpose() {
        Ok(fields) => fields.unwrap_or_default(),
        Err(reason) => {
            return status(
                400,
                "BadRequest",
                format!("invalid field selector: {reason}"),
                json!({}),
            );
        }
    };
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((r, ns, _), _)| *r == target.resource && (target.namespace.is_empty() || *ns == target.namespace))
        .map(|(_, object)| object.clone())
        .filter(|object| {
            labels
                .iter()
                .all(|term| term.matches(object.pointer("/metadata/labels"), false))
        })
        .filter(|object| fields.iter().all(|term| term.matches(Some(object), true)))
        .collect();
    let body = json!({"apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": store.version.to_string()}, "items": items});
    (StatusCode::OK, axum::Json(body)).into_response()
}

enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl Term {
    /// Label terms look `key` up in the labels; field terms follow a dotted path.
    fn matches(&self, scope: Option<&Value>, dotted: bool) -> bool {
        let lookup = |key: &str| -> Option<String> {
            let value = if dotted {
                key.split('.').try_fold(scope?, |v, part| v.get(part))?
            } else {
                scope?.get(key)?
            };
            Some(value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()))
        };
        match self {
            Term::Equals(k, v) => lookup(k).as_deref() == Some(v),
            Term::NotEquals(k, v) => lookup(k).as_deref() != Some(v),
            Term::Exists(k) => lookup(k).is_some(),
            Term::Absent(k) => lookup(k).is_none(),
        }
    }
}

fn parse_selector(selector: &str) -> Result<Vec<Term>, String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            if term.contains(" in ") || term.contains(" notin ") || term.contains('(') {
                return Err(format!("set-based requirement {term:?} is not served by this stand-in"));
            }
            if let Some((k, v)) = term.split_once("!=") {
                Ok(Term::NotEquals(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Ok(Term::Equals(k.trim().into(), v.trim().into()))
            } else if let Some(k) = term.strip_prefix('!') {
                Ok(Term::Absent(k.into()))
            } else {
                Ok(Term::Exists(term.into()))
            }
        })
        .collect()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn add_event(store: &mut Store, namespace: &str, pod: &str, kind: &str, reason: &str, message: String) {
    store.version += 1;
    let name = format!("{pod}.{:x}", store.version);
    let now = timestamp(SystemTime::now());
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": store.version.to_string(), "creationTimestamp": now},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace, "apiVersion": "v1"},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "kubelet"},
    });
    store.objects.insert(("events".into(), namespace.into(), name), event);
}

/// Moves the simulated cluster forward to now: namespaces finish terminating, deleted pods go,
/// pod statuses advance.
fn advance(store: &mut Store, behaviour: &Behaviour) {
    let now = Instant::now();
    let finished: Vec<String> = store
        .terminating
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= behaviour.namespace_termination)
        .map(|(name, _)| name.clone())
        .collect();
    for namespace in finished {
        store.terminating.remove(&namespace);
        store
            .objects
            .retain(|(resource, ns, name), _| *ns != namespace && !(resource == "namespaces" && *name == namespace));
        store.pods.retain(|(ns, _), _| *ns != namespace);
    }
    let gone: Vec<(String, String)> = store
        .pods
        .iter()
        .filter(|(_, pod)| {
            pod.deleted
                .is_some_and(|at| now.duration_since(at) >= behaviour.pod_termination)
        })
        .map(|(key, _)| key.clone())
        .collect();
    for (namespace, name) in gone {
        store.pods.remove(&(namespace.clone(), name.clone()));
        store.objects.remove(&("pods".into(), namespace, name));
    }
    let keys: Vec<(String, String)> = store.pods.keys().cloned().collect();
    for (namespace, name) in keys {
        let pod = &store.pods[&(namespace.clone(), name.clone())];
        let (stage, mut status, event) = pod_status(pod, now, behaviour);
        with_images(&mut status, &pod.images);
        if stage == pod.shown {
            continue;
        }
        store.pods.get_mut(&(namespace.clone(), name.clone())).unwrap().shown = stage;
        if let Some((kind, reason, message)) = event {
            add_event(store, &namespace, &name, kind, reason, message);
        }
        store.version += 1;
        let version = store.version.to_string();
        if let Some(object) = store.objects.get_mut(&("pods".into(), namespace.clone(), name.clone())) {
            object["status"] = status;
            object["metadata"]["resourceVersion"] = json!(version);
        }
    }
}

/// Completes container statuses as a kubelet writes them: each names its `image`, and its
/// `imageID` once the image was pulled (empty before).
fn with_images(status: &mut Value, images: &HashMap<String, String>) {
    for list in ["initContainerStatuses", "containerStatuses"] {
        for entry in status[list].as_array_mut().into_iter().flatten() {
            let image = images
                .get(entry["name"].as_str().unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            let pulled = entry["state"].get("running").is_some()
                || entry["state"].get("terminated").is_some()
                || entry.get("lastState").is_some();
            entry["imageID"] = json!(if pulled {
                let digest: String = Sha256::digest(image.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("docker.io/library/{image}@sha256:{digest}")
            } else {
                String::new()
            });
            entry["image"] = json!(image);
        }
    }
}

type Event = Option<(&'static str, &'static str, String)>;

fn waiting(name: &str, reason: &str, message: &str) -> Value {
    json!({"name": name, "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})
}

/// The status of a pod at `now`, a name for that stage, and the Event announcing it.
fn pod_status(pod: &Pod, now: Instant, b: &Behaviour) -> (&'static str, Value, Event) {
    let age = now.duration_since(pod.created);
    let cond = |t: &str, s: bool| json!({"type": t, "status": if s { "True" } else { "False" }});
    let installed = age >= b.install_time;
    let init_done = json!({"name": "install", "ready": true, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    match pod.outcome {
        PodOutcome::ImagePullError => {
            let (stage, reason) = if installed {
                ("BackOff", "ImagePullBackOff")
            } else {
                ("Pull", "ErrImagePull")
            };
            let status = json!({"phase": "Pending", "conditions": [cond("PodScheduled", true), cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": [waiting("install", reason, "Back-off pulling image \"python:3.11-slim\"")],
                "containerStatuses": [waiting("server", "PodInitializing", "")]});
            let event = Some(("Warning", "Failed", "Failed to pull image \"python:3.11-slim\": rpc error: code = NotFound desc = failed to pull and unpack image: not found".to_owned()));
            (stage, status, event)
        }
        _ if !installed => {
            let status = json!({"phase": "Pending", "conditions": [cond("PodScheduled", true), cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": [{"name": "install", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": timestamp(SystemTime::now())}}}],
                "containerStatuses": [waiting("server", "PodInitializing", "")]});
            (
                "Installing",
                status,
                Some(("Normal", "Started", "Started container install".to_owned())),
            )
        }
        PodOutcome::InstallFails => {
            let status = json!({"phase": "Pending", "conditions": [cond("PodScheduled", true), cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": [{"name": "install", "ready": false, "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=install"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
                "containerStatuses": [waiting("server", "PodInitializing", "")]});
            (
                "InstallFailed",
                status,
                Some((
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container install".to_owned(),
                )),
            )
        }
        PodOutcome::CrashLoop | PodOutcome::OutOfMemory => {
            let (exit, reason) = if pod.outcome == PodOutcome::CrashLoop {
                (1, "Error")
            } else {
                (137, "OOMKilled")
            };
            let status = json!({"phase": "Running", "conditions": [cond("PodScheduled", true), cond("Initialized", true), cond("ContainersReady", false), cond("Ready", false)],
                "initContainerStatuses": [init_done],
                "containerStatuses": [{"name": "server", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=server"}},
                    "lastState": {"terminated": {"exitCode": exit, "reason": reason}}}]});
            (
                "Crashing",
                status,
                Some((
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container server".to_owned(),
                )),
            )
        }
        PodOutcome::Ready => {
            let ready = age >= b.install_time + b.start_time;
            let status = json!({"phase": "Running", "conditions": [cond("PodScheduled", true), cond("Initialized", true), cond("ContainersReady", ready), cond("Ready", ready)],
                "initContainerStatuses": [init_done],
                "containerStatuses": [{"name": "server", "ready": ready, "restartCount": 0, "started": true,
                    "state": {"running": {"startedAt": timestamp(SystemTime::now())}}}]});
            if ready {
                ("Ready", status, None)
            } else {
                (
                    "Starting",
                    status,
                    Some(("Normal", "Started", "Started container server".to_owned())),
                )
            }
        }
    }
}
