//! The simulated kubelet and controllers: pods whose status advances with time (the first init
//! container, then Running and Ready) or fails as configured, with the Events a kubelet writes;
//! Jobs that complete (or fail) after the same install time, as the job controller records it
//! (their pods are not made: the tests' pod runner runs a Job's template); namespaces that
//! finish terminating; containers' logs, served as the kubelet serves them; and pods' CPU, as
//! metrics-server serves it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::status::{Target, not_found, status};
use super::store::{Key, Pod, PodOutcome, Store, timestamp};

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

pub(super) fn add_event(store: &mut Store, namespace: &str, pod: &str, kind: &str, reason: &str, message: String) {
    let name = format!("{pod}.{:x}", store.version + 1);
    let now = timestamp(SystemTime::now());
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace, "apiVersion": "v1"},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "kubelet"},
    });
    store.insert_new(("events".into(), namespace.into(), name), event);
}

/// Moves the simulated cluster forward to now: namespaces finish terminating, deleted pods go,
/// pod statuses advance.
pub(super) fn advance(store: &mut Store, behaviour: &Behaviour) {
    let now = Instant::now();
    let finished: Vec<String> = store
        .terminating
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= behaviour.namespace_termination)
        .map(|(name, _)| name.clone())
        .collect();
    for namespace in finished {
        store.terminating.remove(&namespace);
        let purged: Vec<Key> = store
            .objects
            .keys()
            .filter(|(resource, ns, name)| *ns == namespace || (resource == "namespaces" && *name == namespace))
            .cloned()
            .collect();
        for key in purged {
            store.remove(&key);
        }
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
        store.remove(&("pods".into(), namespace, name));
    }
    let jobs: Vec<(Key, Instant, PodOutcome)> = store
        .jobs
        .iter()
        .map(|(key, (created, outcome))| (key.clone(), *created, *outcome))
        .collect();
    for (key, created, outcome) in jobs {
        if now.duration_since(created) < behaviour.install_time {
            continue;
        }
        store.jobs.remove(&key);
        let Some(mut job) = store.objects.get(&key).cloned() else {
            continue;
        };
        let at = timestamp(SystemTime::now());
        let started = job["status"]["startTime"].clone();
        job["status"] = if outcome == PodOutcome::InstallFails {
            json!({"startTime": started, "failed": 1, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
        } else {
            json!({"startTime": started, "completionTime": at, "succeeded": 1, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]})
        };
        store.version += 1;
        job["metadata"]["resourceVersion"] = json!(store.version.to_string());
        store.objects.insert(key, job);
    }
    let keys: Vec<(String, String)> = store.pods.keys().cloned().collect();
    for (namespace, name) in keys {
        let pod = &store.pods[&(namespace.clone(), name.clone())];
        let (stage, mut status, event) = pod_status(pod, now, behaviour);
        if stage == pod.shown {
            continue;
        }
        with_images(&mut status, &pod.images);
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

/// Completes container statuses as a kubelet writes them: one per container the pod has (the
/// simulated pod runs its first init container, then `server`), each naming its `image`, and its
/// `imageID` once the image was pulled (empty before).
fn with_images(status: &mut Value, images: &HashMap<String, String>) {
    for list in ["initContainerStatuses", "containerStatuses"] {
        if let Some(entries) = status[list].as_array_mut() {
            entries.retain(|entry| images.contains_key(entry["name"].as_str().unwrap_or_default()));
        }
        for entry in status[list].as_array_mut().into_iter().flatten() {
            let image = images
                .get(entry["name"].as_str().unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            let pulled = entry["state"].get("running").is_some()
                || entry["state"].get("terminated").is_some()
                || entry.get("lastState").is_some();
            entry["imageID"] = json!(if pulled && image.contains("@sha256:") {
                format!("docker.io/library/{image}")
            } else if pulled {
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

/// The last lines of a failed install, as its termination message holds them.
pub const INSTALL_FAILURE: &str = "Using Python 3.11.14 environment at: /usr/local\n  × No solution found when resolving dependencies:\n  ╰─▶ Because nosuchpkg was not found in the package registry and you require\n      nosuchpkg, we can conclude that your requirements are unsatisfiable.\n";

fn waiting(name: &str, reason: &str, message: &str) -> Value {
    json!({"name": name, "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}})
}

/// The status of a pod at `now`, a name for that stage, and the Event announcing it.
fn pod_status(pod: &Pod, now: Instant, b: &Behaviour) -> (&'static str, Value, Event) {
    let age = now.duration_since(pod.created);
    let cond = |t: &str, s: bool| json!({"type": t, "status": if s { "True" } else { "False" }});
    let installed = age >= b.install_time;
    let init = pod.init.as_str();
    // What the wait for the environment ends with once the build succeeded: the versions.
    let installed_versions = r#"{"python": "3.11.14", "dill": "0.4.0", "scidx-rexec": "0.1.0"}"#;
    let init_done = json!([{"name": init, "ready": true, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": installed_versions}}}]);
    match pod.outcome {
        PodOutcome::ImagePullError => {
            let (stage, reason) = if installed {
                ("BackOff", "ImagePullBackOff")
            } else {
                ("Pull", "ErrImagePull")
            };
            let status = json!({"phase": "Pending", "conditions": [cond("PodScheduled", true), cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": [waiting(init, reason, "Back-off pulling image \"python:3.11-slim\"")],
                "containerStatuses": [waiting("server", "PodInitializing", "")]});
            let event = Some(("Warning", "Failed", "Failed to pull image \"python:3.11-slim\": rpc error: code = NotFound desc = failed to pull and unpack image: not found".to_owned()));
            (stage, status, event)
        }
        _ if !installed => {
            let status = json!({"phase": "Pending", "conditions": [cond("PodScheduled", true), cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": [{"name": init, "ready": false, "restartCount": 0, "state": {"running": {"startedAt": timestamp(SystemTime::now())}}}],
                "containerStatuses": [waiting("server", "PodInitializing", "")]});
            (
                "Installing",
                status,
                Some(("Normal", "Started", format!("Started container {init}"))),
            )
        }
        PodOutcome::InstallFails => {
            let status = json!({"phase": "Pending", "conditions": [cond("PodScheduled", true), cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": [{"name": init, "ready": false, "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 20s restarting failed container={init}")}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": INSTALL_FAILURE}}}],
                "containerStatuses": [waiting("server", "PodInitializing", "")]});
            (
                "InstallFailed",
                status,
                Some((
                    "Warning",
                    "BackOff",
                    format!("Back-off restarting failed container {init}"),
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
                "initContainerStatuses": init_done,
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
                "initContainerStatuses": init_done,
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

/// `GET pods/{name}/log`: what a container printed, as the kubelet serves it: the one regular
/// container when none is named, 400 for a container the pod lacks or one not started yet,
/// then the last `tailLines` lines, cut at `limitBytes`.
pub(super) fn log(store: &Store, target: &Target, query: &HashMap<String, String>) -> Response {
    let name = target.name.as_deref().unwrap_or_default();
    let Some(object) = store
        .objects
        .get(&("pods".into(), target.namespace.clone(), name.to_owned()))
    else {
        return not_found("pods", name);
    };
    let names = |list: &str| -> Vec<String> {
        object["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (containers, inits) = (names("containers"), names("initContainers"));
    let container = match query.get("container") {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                message += &format!(" or one of the init containers: [{}]", inits.join(" "));
            }
            return status(400, "BadRequest", message, json!({}));
        }
    };
    if !containers.contains(&container) && !inits.contains(&container) {
        return status(
            400,
            "BadRequest",
            format!("container {container} is not valid for pod {name}"),
            json!({}),
        );
    }
    let state = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|list| object["status"][list].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == container.as_str());
    let started = state.as_ref().is_some_and(|c| {
        c["state"].get("waiting").is_none() || c.get("lastState").is_some_and(|l| l.get("terminated").is_some())
    });
    if !started {
        let reason = state
            .as_ref()
            .and_then(|c| c["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating")
            .to_owned();
        return status(
            400,
            "BadRequest",
            format!("container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"),
            json!({}),
        );
    }
    let printed = store
        .pods
        .get(&(target.namespace.clone(), name.to_owned()))
        .and_then(|pod| pod.logs.get(&container))
        .map_or("", String::as_str);
    let lines: Vec<&str> = printed.split_inclusive('\n').collect();
    let tail = query
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| lines.len().saturating_sub(n));
    let mut bytes = lines[tail..].concat().into_bytes();
    if let Some(limit) = query.get("limitBytes").and_then(|n| n.parse::<usize>().ok()) {
        bytes.truncate(limit);
    }
    ([("content-type", "text/plain")], bytes).into_response()
}

/// `GET /apis/metrics.k8s.io/v1beta1/[namespaces/{ns}/]pods[/{name}]`, as metrics-server serves
/// it: the usage of the running pods it has a figure for, label selectors applied; 404 for the
/// whole group while it is not installed.
pub(super) fn metrics(store: &Store, target: &Target, query: &HashMap<String, String>) -> Response {
    let Some(usage) = store.cpu_usage.as_ref().filter(|_| target.resource == "pods") else {
        // As the API server answers for an API group it does not serve: plain text, no Status.
        return Response::builder()
            .status(404)
            .header("content-type", "text/plain; charset=utf-8")
            .body(axum::body::Body::from("404 page not found\n"))
            .unwrap();
    };
    let selector = match super::store::Selector::from_query(query) {
        Ok(selector) => selector,
        Err(message) => return status(400, "BadRequest", message, json!({})),
    };
    let pods = Target {
        resource: "pods".into(),
        namespace: target.namespace.clone(),
        name: None,
        group: String::new(),
    };
    let now = timestamp(SystemTime::now());
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(key, pod)| selector.selects(&pods, key, pod) && pod["status"]["phase"] == "Running")
        .filter(|((_, ns, name), _)| target.name.as_ref().is_none_or(|n| n == name) && usage.contains_key(&(ns.clone(), name.clone())))
        .map(|((_, ns, name), pod)| {
            let containers: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| {
                    // The pod's usage, on its first container.
                    let cpu = if i == 0 { usage[&(ns.clone(), name.clone())].as_str() } else { "0" };
                    json!({"name": c["name"], "usage": {"cpu": cpu, "memory": "0"}})
                })
                .collect();
            json!({"metadata": {"name": name, "namespace": ns, "labels": pod["metadata"]["labels"], "creationTimestamp": now},
                "timestamp": now, "window": "15s", "containers": containers})
        })
        .collect();
    match &target.name {
        Some(name) => match items.into_iter().next() {
            Some(mut item) => {
                item["kind"] = json!("PodMetrics");
                item["apiVersion"] = json!("metrics.k8s.io/v1beta1");
                (StatusCode::OK, axum::Json(item)).into_response()
            }
            None => not_found("pods", name),
        },
        None => (
            StatusCode::OK,
            axum::Json(json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items})),
        )
            .into_response(),
    }
}
