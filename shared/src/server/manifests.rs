//! The Kubernetes objects of a caller's rexec-server, and of an environment's build (its Job and
//! requirement files, see [`super::environment`]).
//!
//! The namespace enforces the `restricted` Pod Security Standard. In it: the guard rails, a
//! ResourceQuota, a LimitRange and a NetworkPolicy (no ingress; egress to DNS, the broker's
//! server port and HTTP(S) on the public internet only, every private, shared and link-local
//! range and the cluster's service range excluded; or to the operator's package-index proxy
//! only), reconciled on every spawn; the claim (see [`super::claim`]); and a Pod `rexec-server-<generation>` whose storage is bounded
//! (`sizeLimit` on every emptyDir, ephemeral-storage requests and limits on every container).
//!
//! The pod runs fixed commands only. It mounts its environment read-only from the shared volume
//! (see [`super::environment`]): an init container waits for the environment's build to end and
//! fails with the builder's last lines if it failed; the server container runs `run_server.py
//! <broker> --broker_port <port>` under a wrapper that makes SIGTERM stop it, with Kubernetes'
//! own `$(VAR)` expansion. It is Ready when it holds a connection to the broker. No caller text
//! ever reaches a command line or a shell.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::claim::{DIGEST, GENERATION};
use super::environment::{
    BUILD, BUILD_TTL, CLEANING, COMPLETED_AT, COMPLETED_BUILD, ENDED_AT, ENVIRONMENT, Environment, IMAGE, LATEST_BUILD,
    REQUIREMENTS_FILE, Record, SERVER_REQUIREMENTS_FILE, USED_AT,
};
use super::naming::{MANAGED_BY, MANAGER, OWNER, Owner, SUB};
use super::requirements::Requirements;
use super::settings::{Egress, EnvironmentSettings, ServerSettings};
use crate::cluster::quantity;

pub const APP: &str = "app.kubernetes.io/name";
pub const APP_NAME: &str = "rexec-server";

/// Address ranges a server never reaches: private (RFC 1918), shared (RFC 6598, carrier-grade
/// NAT), link-local (cloud metadata among them), their IPv6 counterparts, and NAT64's (RFC 6052
/// and 8215: through a NAT64 gateway they reach IPv4 addresses, private ones included).
pub const PRIVATE_IPV4: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
];
pub const PRIVATE_IPV6: [&str; 4] = ["fc00::/7", "fe80::/10", "64:ff9b::/96", "64:ff9b:1::/48"];

/// The build of an environment into /opt/rexec/env (a directory of its own on the shared
/// volume): the pinned rexec-server source archive `REXEC_SERVER_SOURCE`, checked against
/// `REXEC_SERVER_SOURCE_SHA256`, unpacked into `server/`, then the server's requirements
/// and the caller's installed into `packages/` by the installer `REXEC_INSTALLER` names. It
/// prints a line at each step ([`super::status::STEP_FETCHING`], [`super::status::STEP_INSTALLING`])
/// and the installer's output, and keeps them in `.log` (lines cut at 500 characters). It ends with a marker: `.complete` holding the JSON of the versions a client
/// must match (python, dill, scidx-rexec), or `.failed` holding what went wrong (the installer's
/// last lines); the same text is the container's termination message.
pub const BUILD_SCRIPT: &str = include_str!("pod/build.py");

/// Waits for the build of the environment mounted at /opt/rexec/env to end, printing the build's
/// output as it comes (its log, `.log`): the tail of this container's log says where the build
/// is. Its termination message is the build's marker: the versions, or what went wrong (then it
/// fails).
const WAIT_SCRIPT: &str = include_str!("pod/wait.py");

/// Runs the rexec-server as a child in its own process group, so that SIGTERM stops it at once:
/// the server installs no handler and, as PID 1, would ignore the signal until the grace period
/// ends. As PID 1 it also reaps the orphans the server's calls leave.
const SERVE_SCRIPT: &str = include_str!("pod/serve.py");

/// The readiness probe: ready when the pod holds an established TCP connection to the broker's
/// port (`REXEC_BROKER_PORT`), read from the pod's own socket tables. The pod runs nothing but
/// the server.
const PROBE_SCRIPT: &str = include_str!("pod/probe.py");

/// The containers: the server pod's, in the order they run, and an environment build's.
pub const WAIT_CONTAINER: &str = "wait-for-environment";
pub const SERVER_CONTAINER: &str = "server";
pub const BUILD_CONTAINER: &str = "build";
/// The claim of the shared volume of environments, in every namespace that mounts it.
pub const ENVIRONMENT_CLAIM: &str = "rexec-environments";
/// The label of a cleanup Job naming the environment it cleans, its container, and where it
/// mounts the environment's directory.
pub const CLEANS: &str = "rexec.ndp.io/cleans";
pub const CLEANUP_CONTAINER: &str = "clean";
pub const CLEANUP_MOUNT: &str = "/opt/rexec/environment";
/// The ResourceQuota of the environments' namespace.
pub const BUILD_QUOTA: &str = "rexec-builds";

/// The pod of a generation.
pub fn pod_name(generation: u64) -> String {
    format!("{APP_NAME}-{generation}")
}

/// A typed object from its JSON manifest. k8s-openapi's types drop a field they do not know:
/// debug builds (every test) write the object back and compare, so a misspelled field fails
/// a test instead of vanishing from what is sent.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(value: serde_json::Value) -> T {
    #[cfg(debug_assertions)]
    let written = value.clone();
    let object = serde_json::from_value(value).expect("manifests match the Kubernetes schema");
    #[cfg(debug_assertions)]
    if let Some(path) = dropped(
        &written,
        &serde_json::to_value(&object).expect("a typed object is JSON"),
    ) {
        panic!("{path} of this manifest is not in the Kubernetes schema");
    }
    object
}

/// The first field of `written` that `typed` does not hold as written (`null` fields aside:
/// a typed object leaves them out).
#[cfg(debug_assertions)]
fn dropped(written: &serde_json::Value, typed: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match (written, typed) {
        (Value::Object(fields), Value::Object(kept)) => fields.iter().find_map(|(name, value)| match kept.get(name) {
            _ if value.is_null() => None,
            Some(held) => dropped(value, held).map(|path| format!("{name}.{path}")),
            None => Some(name.clone()),
        }),
        (Value::Array(items), Value::Array(kept)) if items.len() == kept.len() => items
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (item, held))| dropped(item, held).map(|path| format!("{i}.{path}"))),
        _ if written == typed => None,
        _ => Some("(value)".into()),
    }
}

/// The caller's namespace: ours, its owner recorded, the `restricted` Pod Security Standard
/// enforced. It records when a spawn last wrote it (at `now`, to the nanosecond): every spawn changes its
/// `resourceVersion`, which the reaper's deletion of the namespace takes as its precondition, so
/// that a caller who spawns after the reaper's decision keeps it.
pub fn namespace(owner: &Owner, now: SystemTime) -> Namespace {
    let mut labels = owner.labels();
    for mode in ["enforce", "audit", "warn"] {
        labels[format!("pod-security.kubernetes.io/{mode}")] = json!("restricted");
        labels[format!("pod-security.kubernetes.io/{mode}-version")] = json!("latest");
    }
    let spawned = humantime::format_rfc3339_nanos(now).to_string();
    typed(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": owner.namespace, "labels": labels, "annotations": {SUB: owner.sub, SPAWNED_AT: spawned}},
    }))
}

/// The annotation of a caller's namespace saying when a spawn last wrote it.
pub const SPAWNED_AT: &str = "rexec.ndp.io/spawned-at";

pub fn resource_quota(owner: &Owner, settings: &ServerSettings) -> ResourceQuota {
    // Room for two servers: the old one terminating while its replacement starts.
    let mut hard = pods_of(settings, 2);
    hard["configmaps"] = json!("4");
    hard["persistentvolumeclaims"] = json!("1");
    typed(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "rexec-quota", "namespace": owner.namespace, "labels": owner.labels()},
        "spec": {"hard": hard},
    }))
}

/// The quota of `n` pods of one container each, as servers and builds are, and their resources.
fn pods_of(settings: &ServerSettings, n: u32) -> serde_json::Value {
    // The settings' quantities are read when the settings are: a multiple always is one.
    let times = |text: &str| quantity::times(text, n).unwrap_or_else(|| text.to_owned());
    json!({
        "pods": n.to_string(),
        "requests.cpu": times(&settings.cpu_request),
        "requests.memory": times(&settings.memory_request),
        "requests.ephemeral-storage": times(&settings.storage_request),
        "limits.cpu": times(&settings.cpu_limit),
        "limits.memory": times(&settings.memory_limit),
        "limits.ephemeral-storage": times(&settings.storage_limit),
    })
}

/// Bounds and defaults for every container of the namespace, ours or not.
pub fn limit_range(owner: &Owner, settings: &ServerSettings) -> LimitRange {
    let limits = json!({"cpu": settings.cpu_limit, "memory": settings.memory_limit, "ephemeral-storage": settings.storage_limit});
    typed(json!({
        "apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "rexec-limits", "namespace": owner.namespace, "labels": owner.labels()},
        "spec": {"limits": [{
            "type": "Container",
            "max": limits,
            "default": limits,
            "defaultRequest": {"cpu": settings.cpu_request, "memory": settings.memory_request, "ephemeral-storage": settings.storage_request},
        }]},
    }))
}

/// The quota of the environments' namespace: as many build pods as `REXEC_MAX_BUILDS`, and
/// their resources at most that many times one build's.
pub fn build_quota(settings: &ServerSettings) -> ResourceQuota {
    typed(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": BUILD_QUOTA, "namespace": settings.environments.namespace, "labels": {MANAGED_BY: MANAGER}},
        "spec": {"hard": pods_of(settings, settings.environments.max_builds)},
    }))
}

pub fn network_policy(owner: &Owner, settings: &ServerSettings) -> NetworkPolicy {
    let outside = match &settings.egress {
        Egress::PublicInternet { excluded } => {
            let except = |private: &[&str], v6: bool| -> Vec<String> {
                private
                    .iter()
                    .map(|c| c.to_string())
                    .chain(excluded.iter().filter(|c| c.contains(':') == v6).cloned())
                    .collect()
            };
            json!({"to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": except(&PRIVATE_IPV4, false)}},
                    {"ipBlock": {"cidr": "::/0", "except": except(&PRIVATE_IPV6, true)}},
                ],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}]})
        }
        Egress::Proxy { address, port, .. } => {
            let host = if address.is_ipv4() { 32 } else { 128 };
            json!({"to": [{"ipBlock": {"cidr": format!("{address}/{host}")}}], "ports": [{"protocol": "TCP", "port": port}]})
        }
    };
    typed(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "rexec-egress", "namespace": owner.namespace, "labels": owner.labels()},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.broker.namespace}}}],
                 "ports": [{"protocol": "TCP", "port": settings.broker.port}]},
                outside,
            ],
        },
    }))
}

/// The environment every container of servers and builds has: a writable home, no bytecode
/// written.
fn common_env() -> Vec<serde_json::Value> {
    vec![
        json!({"name": "HOME", "value": "/tmp"}),
        json!({"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}),
    ]
}

/// The pod-level security of servers and builds: non-root, seccomp `RuntimeDefault`.
pub(super) fn pod_security() -> serde_json::Value {
    json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The security context of every container: nothing privileged, nothing written but volumes.
fn locked_down() -> serde_json::Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// A container of a server or a build: a fixed command, nothing privileged, bounded, and its
/// last log lines kept as its termination message when it fails.
pub(super) fn container(
    settings: &ServerSettings,
    reqs: &Requirements,
    name: &str,
    command: serde_json::Value,
    env: Vec<serde_json::Value>,
    mounts: serde_json::Value,
) -> serde_json::Value {
    json!({
        "name": name, "image": settings.image_for(&reqs.python), "command": command, "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": locked_down(),
        "resources": {
            "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request, "ephemeral-storage": settings.storage_request},
            "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit, "ephemeral-storage": settings.storage_limit},
        },
        "volumeMounts": mounts,
    })
}

/// The caller's claim of the shared volume of environments, which the server mounts read-only.
pub fn environment_claim(owner: &Owner, settings: &ServerSettings) -> PersistentVolumeClaim {
    typed(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": ENVIRONMENT_CLAIM, "namespace": owner.namespace, "labels": owner.labels()},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": settings.environments.storage_class,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }))
}

/// The server of a generation, on build `build` of its environment.
pub fn pod(owner: &Owner, settings: &ServerSettings, reqs: &Requirements, generation: u64, build: u64) -> Pod {
    let environment = Environment::of(settings, reqs);
    let mounts = json!([
        {"name": "environment", "mountPath": "/opt/rexec/env", "subPath": environment.directory(build), "readOnly": true},
        {"name": "tmp", "mountPath": "/tmp"},
    ]);
    let common_env = common_env();
    let mut server_env = vec![
        json!({"name": "REXEC_USER_ID", "value": owner.sub}),
        json!({"name": "REXEC_BROKER_ADDR", "value": settings.broker.host()}),
        json!({"name": "REXEC_BROKER_PORT", "value": settings.broker.port.to_string()}),
        json!({"name": "PYTHONPATH", "value": "/opt/rexec/env/packages"}),
        json!({"name": "PYTHONUNBUFFERED", "value": "1"}),
    ];
    server_env.extend(common_env.clone());
    let mut server = container(
        settings,
        reqs,
        SERVER_CONTAINER,
        json!([
            "python",
            "-c",
            SERVE_SCRIPT,
            "$(REXEC_BROKER_ADDR)",
            "--broker_port",
            "$(REXEC_BROKER_PORT)"
        ]),
        server_env,
        mounts.clone(),
    );
    server["workingDir"] = json!("/opt/rexec/env/server");
    server["readinessProbe"] = json!({
        "exec": {"command": ["python", "-c", PROBE_SCRIPT]},
        "periodSeconds": 1, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 3,
    });
    let wait = container(
        settings,
        reqs,
        WAIT_CONTAINER,
        json!(["python", "-c", WAIT_SCRIPT]),
        common_env,
        mounts,
    );
    typed(json!({
        "metadata": {
            "name": pod_name(generation),
            "namespace": owner.namespace,
            "labels": {MANAGED_BY: MANAGER, APP: APP_NAME, OWNER: owner.slug, DIGEST: &reqs.digest[..32],
                       GENERATION: generation.to_string(), ENVIRONMENT: environment.label(), BUILD: build.to_string()},
            "annotations": {SUB: owner.sub, ENVIRONMENT: environment.key},
        },
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 10,
            "securityContext": pod_security(),
            "volumes": [
                // Every mount of it is read-only; the volume itself is not, so that a kubelet
                // makes the build's directory when the wait starts before the build does (it
                // makes no missing subPath on a read-only volume, and retries 10 s later).
                {"name": "environment", "persistentVolumeClaim": {"claimName": ENVIRONMENT_CLAIM}},
                {"name": "tmp", "emptyDir": {"sizeLimit": settings.storage_limit}},
            ],
            "initContainers": [wait],
            "containers": [server],
        },
    }))
}

fn build_labels(env: &Environment, n: u64) -> serde_json::Value {
    json!({MANAGED_BY: MANAGER, ENVIRONMENT: env.label(), BUILD: n.to_string()})
}

/// The record of the environment labelled `label`, which outlives its builds' Jobs (see
/// [`super::builds`]).
pub fn environment_record(settings: &EnvironmentSettings, label: &str, record: &Record) -> ConfigMap {
    let time = |at: SystemTime| json!(humantime::format_rfc3339_seconds(at).to_string());
    let mut annotations = json!({ENVIRONMENT: record.key, LATEST_BUILD: record.latest.to_string()});
    if let Some((n, at)) = record.completed {
        annotations[COMPLETED_BUILD] = json!(n.to_string());
        annotations[COMPLETED_AT] = time(at);
    }
    for (name, at) in [(ENDED_AT, record.ended_at), (USED_AT, record.used_at)] {
        if let Some(at) = at {
            annotations[name] = time(at);
        }
    }
    if let Some(through) = record.cleaning {
        annotations[CLEANING] = json!(through.to_string());
    }
    if let Some(image) = &record.image {
        annotations[IMAGE] = json!(image);
    }
    typed(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": record_name(label), "namespace": settings.namespace,
                     "labels": {MANAGED_BY: MANAGER, ENVIRONMENT: label}, "annotations": annotations},
    }))
}

/// The cleanup of the environment labelled `label`: its builds `1..=through` removed from the
/// shared volume, by one fixed command, `rm -rf --` of their directories, in the builds' image,
/// mounting the environment's directory alone; within the builds' deadline, one try.
pub fn cleanup_job(settings: &EnvironmentSettings, label: &str, record: &Record, through: u64) -> Job {
    let builds: Vec<String> = (1..=through).map(|n| format!("{CLEANUP_MOUNT}/{n}")).collect();
    let bounded = json!({"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "16Mi"});
    let cleaner = json!({
        "name": CLEANUP_CONTAINER, "image": record.image, "command": ["rm", "-rf", "--"], "args": builds,
        "securityContext": locked_down(),
        "resources": {"requests": bounded, "limits": bounded},
        "volumeMounts": [{"name": "environments", "mountPath": CLEANUP_MOUNT, "subPath": record.key}],
    });
    typed(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": cleanup_name(label),
            "namespace": settings.namespace,
            "labels": {MANAGED_BY: MANAGER, CLEANS: label},
            "annotations": {ENVIRONMENT: record.key},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.build_timeout.as_secs(),
            "ttlSecondsAfterFinished": BUILD_TTL.as_secs(),
            "template": {
                "metadata": {"labels": {MANAGED_BY: MANAGER, CLEANS: label}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": pod_security(),
                    "volumes": [{"name": "environments", "persistentVolumeClaim": {"claimName": ENVIRONMENT_CLAIM}}],
                    "containers": [cleaner],
                },
            },
        },
    }))
}

pub use super::environment::record_name;

/// The cleanup Job of the environment labelled `label`.
pub fn cleanup_name(label: &str) -> String {
    format!("clean-{label}")
}

/// The requirement files of build `n`, which its builder reads.
pub fn build_files(env: &Environment, settings: &ServerSettings, reqs: &Requirements, n: u64) -> ConfigMap {
    let data: BTreeMap<&str, String> = BTreeMap::from([
        (REQUIREMENTS_FILE, reqs.file()),
        (
            SERVER_REQUIREMENTS_FILE,
            settings.server_requirements.iter().map(|l| format!("{l}\n")).collect(),
        ),
    ]);
    typed(json!({
        "metadata": {"name": env.build_name(n), "namespace": settings.environments.namespace, "labels": build_labels(env, n)},
        "data": data,
    }))
}

/// The Job of build `n`, started for `starter`: one try within `REXEC_BUILD_TIMEOUT`, removed
/// by Kubernetes [`BUILD_TTL`] after it ends at the latest, the build's directory alone
/// writable, nothing privileged.
pub fn build_job(env: &Environment, settings: &ServerSettings, starter: &Owner, reqs: &Requirements, n: u64) -> Job {
    let mounts = json!([
        {"name": "environments", "mountPath": "/opt/rexec/env", "subPath": env.directory(n)},
        {"name": "requirements", "mountPath": "/opt/rexec/requirements", "readOnly": true},
        {"name": "tmp", "mountPath": "/tmp"},
    ]);
    let mut env_vars = common_env();
    env_vars.push(json!({"name": "REXEC_INSTALLER", "value": settings.installer.name()}));
    env_vars.push(json!({"name": "REXEC_SERVER_SOURCE", "value": settings.source}));
    env_vars.push(json!({"name": "REXEC_SERVER_SOURCE_SHA256", "value": settings.source_sha256}));
    env_vars.push(json!({"name": "REXEC_BUILD_MAX_BYTES", "value": settings.environments.build_max_bytes.to_string()}));
    if let Egress::Proxy { url, .. } = &settings.egress {
        env_vars.push(json!({"name": "PIP_INDEX_URL", "value": url}));
        env_vars.push(json!({"name": "UV_DEFAULT_INDEX", "value": url}));
    }
    let mut job_labels = build_labels(env, n);
    job_labels[OWNER] = json!(starter.slug);
    let builder = container(
        settings,
        reqs,
        BUILD_CONTAINER,
        json!(["python", "-c", BUILD_SCRIPT]),
        env_vars,
        mounts,
    );
    typed(json!({
        "metadata": {
            "name": env.build_name(n),
            "namespace": settings.environments.namespace,
            "labels": job_labels,
            "annotations": {ENVIRONMENT: env.key},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.environments.build_timeout.as_secs(),
            "ttlSecondsAfterFinished": BUILD_TTL.as_secs(),
            "template": {
                "metadata": {"labels": build_labels(env, n)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": pod_security(),
                    "volumes": [
                        {"name": "environments", "persistentVolumeClaim": {"claimName": ENVIRONMENT_CLAIM}},
                        {"name": "requirements", "configMap": {"name": env.build_name(n)}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": settings.storage_limit}},
                    ],
                    "containers": [builder],
                },
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    #[should_panic(expected = "not in the Kubernetes schema")]
    fn a_misspelled_field_fails_instead_of_vanishing() {
        let _: Pod = typed(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolcy": "Never"},
        }));
    }

    #[test]
    fn a_manifest_the_schema_knows_is_kept_whole() {
        let pod: Pod = typed(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": null},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 5560}]}],
                     "restartPolicy": "Never"},
        }));
        assert_eq!(pod.spec.unwrap().restart_policy.as_deref(), Some("Never"));
    }
    use crate::config::Vars;

    use crate::server::naming::Naming;
    use crate::server::requirements::RequirementsPolicy;
    use crate::server::settings::test_settings;

    fn settings() -> ServerSettings {
        test_settings(&[]).unwrap()
    }

    fn owner() -> Owner {
        Owner::new(&Naming::from_vars(&Vars::default()).unwrap(), "Alice")
    }

    fn reqs(lines: &[&str]) -> Requirements {
        RequirementsPolicy::from_vars(&Vars::default())
            .unwrap()
            .check(lines)
            .unwrap()
    }

    #[test]
    fn the_pod_carries_the_caller_and_the_broker() {
        let pod = serde_json::to_value(pod(&owner(), &settings(), &reqs(&["python==3.12", "numpy"]), 3, 1)).unwrap();
        assert_eq!(pod["metadata"]["name"], "rexec-server-3");
        let server = &pod["spec"]["containers"][0];
        assert_eq!(
            server["image"],
            format!(
                "ghcr.io/astral-sh/uv:python3.12-bookworm-slim@sha256:{}",
                "d1".repeat(32)
            ),
            "by its digest"
        );
        let env: BTreeMap<String, String> = server["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(env["REXEC_USER_ID"], "Alice");
        assert_eq!(env["REXEC_BROKER_ADDR"], "rexec-broker.rexec.svc");
        assert_eq!(env["REXEC_BROKER_PORT"], "5560");
    }

    #[test]
    fn the_installer_changes_the_build_and_its_key_only() {
        let render = |installer: &str| {
            let s = test_settings(&[("REXEC_INSTALLER", installer)]).unwrap();
            let r = reqs(&["python==3.11"]);
            let env = Environment::of(&s, &r);
            (
                env.key.clone(),
                serde_json::to_string(&build_job(&env, &s, &owner(), &r, 1)).unwrap(),
            )
        };
        let ((uv_key, uv), (pip_key, pip)) = (render("uv"), render("pip"));
        assert_ne!(uv_key, pip_key);
        let mut pip: serde_json::Value =
            serde_json::from_str(&pip.replace(&pip_key, &uv_key).replace(&pip_key[..40], &uv_key[..40])).unwrap();
        let entry = pip["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e["name"] == "REXEC_INSTALLER")
            .unwrap();
        assert_eq!(entry["value"], "pip");
        entry["value"] = json!("uv");
        assert_eq!(
            pip,
            serde_json::from_str::<serde_json::Value>(&uv).unwrap(),
            "REXEC_INSTALLER's value is all that differs"
        );
    }

    #[test]
    fn the_pod_is_locked_down() {
        let pod = serde_json::to_value(pod(&owner(), &settings(), &reqs(&["python==3.11"]), 1, 1)).unwrap();
        let spec = &pod["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let containers: Vec<&serde_json::Value> = spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["containers"].as_array().unwrap())
            .collect();
        assert_eq!(containers.len(), 2);
        assert!(
            spec["volumes"][0]["persistentVolumeClaim"].get("readOnly").is_none(),
            "a kubelet makes a missing subPath of a writable volume only"
        );
        for c in containers {
            let environment = &c["volumeMounts"][0];
            assert_eq!(environment["name"], "environment");
            assert_eq!(
                environment["readOnly"], true,
                "{}: the environment is read-only",
                c["name"]
            );
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{}", c["name"]);
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
            assert!(c["resources"]["limits"]["memory"].is_string() && c["resources"]["requests"]["cpu"].is_string());
            assert!(c.get("args").is_none());
            assert_ne!(c["command"][0], "sh", "no shell");
        }
    }

    #[test]
    fn caller_text_reaches_only_the_build_files() {
        let hostile = "scipy; python_version > \"3.8\"";
        let r = reqs(&["python==3.11", hostile, "numpy<2"]);
        let s = settings();
        let env = Environment::of(&s, &r);
        for text in [
            serde_json::to_string(&pod(&owner(), &s, &r, 1, 1)).unwrap(),
            serde_json::to_string(&build_job(&env, &s, &owner(), &r, 1)).unwrap(),
        ] {
            assert!(
                !text.contains("scipy") && !text.contains("numpy"),
                "requirements stay out of pod specs"
            );
        }
        for file in [REQUIREMENTS_FILE, SERVER_REQUIREMENTS_FILE] {
            assert!(
                BUILD_SCRIPT.contains(&format!("\"-r\", \"/opt/rexec/requirements/{file}\"")),
                "{file}"
            );
        }
        let data = build_files(&env, &s, &r, 1).data.unwrap();
        assert_eq!(data[REQUIREMENTS_FILE], format!("{hostile}\nnumpy<2\n"));
        assert!(data[SERVER_REQUIREMENTS_FILE].contains("pyzmq"));
    }

    fn egress(settings: &ServerSettings) -> Vec<serde_json::Value> {
        let policy = serde_json::to_value(network_policy(&owner(), settings)).unwrap();
        assert_eq!(policy["spec"]["ingress"], json!([]), "no ingress");
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        policy["spec"]["egress"].as_array().unwrap().clone()
    }

    #[test]
    fn egress_is_dns_the_broker_and_the_public_internet_only() {
        let rules = egress(&settings());
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"], "kube-dns");
        assert_eq!(rules[1]["ports"], json!([{"protocol": "TCP", "port": 5560}]));
        assert_eq!(
            rules[1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "rexec"
        );
        let public = &rules[2];
        assert_eq!(
            public["ports"],
            json!([{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}])
        );
        assert_eq!(public["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
        assert_eq!(public["to"][0]["ipBlock"]["except"], json!(PRIVATE_IPV4));
        for range in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "169.254.0.0/16",
        ] {
            assert!(PRIVATE_IPV4.contains(&range), "{range}");
        }
        assert_eq!(public["to"][1]["ipBlock"]["cidr"], "::/0");
        assert_eq!(
            public["to"][1]["ipBlock"]["except"],
            json!(["fc00::/7", "fe80::/10", "64:ff9b::/96", "64:ff9b:1::/48"])
        );
    }

    #[test]
    fn the_service_range_is_excluded_too() {
        let s = test_settings(&[("REXEC_CLUSTER_SERVICE_CIDRS", "198.18.0.0/16, fd00:10:96::/112")]).unwrap();
        let public = &egress(&s)[2];
        assert!(
            public["to"][0]["ipBlock"]["except"]
                .as_array()
                .unwrap()
                .contains(&json!("198.18.0.0/16"))
        );
        assert!(
            public["to"][1]["ipBlock"]["except"]
                .as_array()
                .unwrap()
                .contains(&json!("fd00:10:96::/112"))
        );
        for bad in ["10.100.0.0", "10.100.0.0/33", "x/8", "::/129"] {
            for name in ["REXEC_CLUSTER_SERVICE_CIDRS", "REXEC_VPC_CIDRS"] {
                let err = test_settings(&[(name, bad)]).unwrap_err();
                assert_eq!(err.variable, name, "{bad}");
            }
        }
    }

    #[test]
    fn the_vpcs_ipv6_ranges_are_excluded_with_nat64() {
        let s = test_settings(&[("REXEC_VPC_CIDRS", "10.0.0.0/16, 2600:1f18:abcd:1200::/56")]).unwrap();
        let public = &egress(&s)[2];
        let except = public["to"][1]["ipBlock"]["except"].as_array().unwrap();
        for range in ["2600:1f18:abcd:1200::/56", "64:ff9b::/96", "64:ff9b:1::/48"] {
            assert!(except.contains(&json!(range)), "{range}");
        }
    }

    #[test]
    fn a_package_index_proxy_replaces_the_internet() {
        let s = test_settings(&[("REXEC_PACKAGE_INDEX_PROXY", "http://10.0.3.7:3141/root/pypi/+simple/")]).unwrap();
        let rules = egress(&s);
        assert_eq!(
            rules[2],
            json!({"to": [{"ipBlock": {"cidr": "10.0.3.7/32"}}], "ports": [{"protocol": "TCP", "port": 3141}]})
        );
        let r = reqs(&["python==3.11"]);
        let job = serde_json::to_value(build_job(&Environment::of(&s, &r), &s, &owner(), &r, 1)).unwrap();
        let install = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(install["name"], BUILD_CONTAINER);
        for variable in ["PIP_INDEX_URL", "UV_DEFAULT_INDEX"] {
            assert!(
                install["env"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({"name": variable, "value": "http://10.0.3.7:3141/root/pypi/+simple/"})),
                "{variable}"
            );
        }
        let err = test_settings(&[("REXEC_PACKAGE_INDEX_PROXY", "https://pypi.internal/simple")]).unwrap_err();
        assert_eq!(err.variable, "REXEC_PACKAGE_INDEX_PROXY");
    }

    #[test]
    fn storage_is_bounded_everywhere() {
        let pod = serde_json::to_value(pod(&owner(), &settings(), &reqs(&["python==3.11"]), 1, 1)).unwrap();
        for volume in pod["spec"]["volumes"].as_array().unwrap() {
            if volume.get("emptyDir").is_some() {
                assert_eq!(volume["emptyDir"]["sizeLimit"], "8Gi", "{volume}");
            }
        }
        let spec = &pod["spec"];
        for c in spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["containers"].as_array().unwrap())
        {
            assert_eq!(c["resources"]["requests"]["ephemeral-storage"], "1Gi", "{}", c["name"]);
            assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "8Gi", "{}", c["name"]);
        }
        let quota = serde_json::to_value(resource_quota(&owner(), &settings())).unwrap();
        assert_eq!(quota["spec"]["hard"]["requests.ephemeral-storage"], "2Gi");
        assert_eq!(quota["spec"]["hard"]["limits.ephemeral-storage"], "16Gi");
        let limits = serde_json::to_value(limit_range(&owner(), &settings())).unwrap();
        let container = &limits["spec"]["limits"][0];
        assert_eq!(container["type"], "Container");
        assert_eq!(container["max"]["ephemeral-storage"], "8Gi");
        assert_eq!(container["default"]["memory"], "4Gi");
        assert_eq!(container["defaultRequest"]["cpu"], "250m");
    }

    /// The checks of the `restricted` Pod Security Standard (Kubernetes 1.33) on a pod spec.
    fn restricted_violations(spec: &serde_json::Value) -> Vec<String> {
        let mut found = Vec::new();
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            if spec[host] == json!(true) {
                found.push(host.to_owned());
            }
        }
        let allowed_volumes = [
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        ];
        for volume in spec["volumes"].as_array().into_iter().flatten() {
            let kinds: Vec<&String> = volume.as_object().unwrap().keys().filter(|k| *k != "name").collect();
            if kinds.iter().any(|k| !allowed_volumes.contains(&k.as_str())) {
                found.push(format!("volume {kinds:?}"));
            }
        }
        let pod_non_root = spec["securityContext"]["runAsNonRoot"] == json!(true);
        let pod_seccomp = spec["securityContext"]["seccompProfile"]["type"].clone();
        for c in spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["containers"].as_array().into_iter().flatten())
        {
            let sc = &c["securityContext"];
            let name = c["name"].as_str().unwrap_or_default();
            if sc["privileged"] == json!(true) {
                found.push(format!("{name}: privileged"));
            }
            if sc["allowPrivilegeEscalation"] != json!(false) {
                found.push(format!("{name}: allowPrivilegeEscalation"));
            }
            if !sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.contains(&json!("ALL")))
            {
                found.push(format!("{name}: capabilities not dropped"));
            }
            if sc["capabilities"]["add"]
                .as_array()
                .is_some_and(|a| a.iter().any(|cap| cap != "NET_BIND_SERVICE"))
            {
                found.push(format!("{name}: capabilities added"));
            }
            if !(pod_non_root || sc["runAsNonRoot"] == json!(true)) || sc["runAsUser"] == json!(0) {
                found.push(format!("{name}: may run as root"));
            }
            let seccomp = if sc["seccompProfile"].is_null() {
                &pod_seccomp
            } else {
                &sc["seccompProfile"]["type"]
            };
            if !matches!(seccomp.as_str(), Some("RuntimeDefault" | "Localhost")) {
                found.push(format!("{name}: seccomp"));
            }
            if c["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p.get("hostPort").is_some()))
            {
                found.push(format!("{name}: hostPort"));
            }
        }
        found
    }

    #[test]
    fn the_namespace_enforces_restricted_and_the_pod_meets_it() {
        let ns = serde_json::to_value(namespace(&owner(), SystemTime::now())).unwrap();
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        assert_eq!(ns["metadata"]["labels"][MANAGED_BY], MANAGER);
        assert_eq!(ns["metadata"]["annotations"][SUB], "Alice");
        let pod = serde_json::to_value(pod(&owner(), &settings(), &reqs(&["python==3.11"]), 1, 1)).unwrap();
        assert_eq!(restricted_violations(&pod["spec"]), Vec::<String>::new());
        let mut bad = pod["spec"].clone();
        bad["hostNetwork"] = json!(true);
        bad["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        bad["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "h", "hostPath": {"path": "/"}}));
        assert_eq!(restricted_violations(&bad).len(), 3, "the checker sees what it checks");
    }

    #[test]
    fn the_quota_leaves_room_for_a_replacement() {
        let quota = serde_json::to_value(resource_quota(&owner(), &settings())).unwrap();
        assert_eq!(quota["spec"]["hard"]["limits.memory"], "8Gi");
        assert_eq!(quota["spec"]["hard"]["requests.cpu"], "500m");
        assert_eq!(quota["spec"]["hard"]["pods"], "2");
    }

    #[test]
    fn the_build_and_its_wait_print_the_steps_progress_is_read_from() {
        use crate::server::status::{STEP_FETCHING, STEP_INSTALLING, STEP_WAITING};
        assert!(WAIT_SCRIPT.contains(&format!("print(\"{STEP_WAITING}\"")));
        assert!(BUILD_SCRIPT.contains(&format!("say(\"{STEP_FETCHING}\\n\")")));
        assert!(BUILD_SCRIPT.contains(&format!("say(\"{STEP_INSTALLING} with \" + installer")));
    }

    #[test]
    fn the_admission_policy_names_the_build_script_exactly() {
        // The policy admits a build whose command is this script, character for character, in
        // a CEL raw string of its YAML block (each line indented by eight spaces).
        let policy = include_str!("../../../deploy/k8s/admission-policy.yaml");
        let lines: String = BUILD_SCRIPT.lines().map(|line| format!("        {line}\n")).collect();
        let expected = format!(
            "expression: |-\n        ['python', '-c', r'''{}        ''']\n",
            lines.trim_start()
        );
        assert!(
            policy.contains(&expected),
            "the buildCommand of deploy/k8s/admission-policy.yaml is not BUILD_SCRIPT: copy it there"
        );
        assert!(!BUILD_SCRIPT.contains("'''") && !BUILD_SCRIPT.lines().any(str::is_empty));
    }

    #[test]
    fn a_build_is_bounded_in_time_size_and_number() {
        let s = test_settings(&[
            ("REXEC_BUILD_TIMEOUT", "300"),
            ("REXEC_BUILD_MAX_SIZE", "2Gi"),
            ("REXEC_MAX_BUILDS", "5"),
        ])
        .unwrap();
        let r = reqs(&["python==3.11"]);
        let job = serde_json::to_value(build_job(&Environment::of(&s, &r), &s, &owner(), &r, 1)).unwrap();
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 300);
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], BUILD_TTL.as_secs());
        assert_eq!(job["metadata"]["labels"][OWNER], owner().slug, "who started it");
        assert!(
            job["spec"]["template"]["metadata"]["labels"].get(OWNER).is_none(),
            "its pod is no caller's server"
        );
        let env = job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        assert!(env.contains(&json!({"name": "REXEC_BUILD_MAX_BYTES", "value": (2u64 << 30).to_string()})));
        assert!(BUILD_SCRIPT.contains("int(os.environ[\"REXEC_BUILD_MAX_BYTES\"])"));
        let quota = serde_json::to_value(build_quota(&s)).unwrap();
        assert_eq!(quota["metadata"]["namespace"], "rexec-environments");
        assert_eq!(
            quota["spec"]["hard"],
            json!({"pods": "5", "requests.cpu": "1250m", "requests.memory": "2560Mi",
                   "requests.ephemeral-storage": "5Gi", "limits.cpu": "10", "limits.memory": "20Gi",
                   "limits.ephemeral-storage": "40Gi"})
        );
    }

    #[test]
    fn a_cleanup_removes_the_builds_it_names_of_its_environment_only() {
        let s = settings();
        let record = Record {
            key: "a".repeat(64),
            latest: 3,
            image: Some("python:3.11-slim".into()),
            ..Record::default()
        };
        let job = serde_json::to_value(cleanup_job(&s.environments, "aaaa", &record, 2)).unwrap();
        assert_eq!(job["metadata"]["name"], "clean-aaaa");
        assert_eq!(job["metadata"]["labels"][CLEANS], "aaaa");
        assert!(job["metadata"]["labels"].get(ENVIRONMENT).is_none(), "no build of it");
        assert_eq!(
            (&job["spec"]["backoffLimit"], &job["spec"]["activeDeadlineSeconds"]),
            (&json!(0), &json!(600))
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let cleaner = &containers[0];
        assert_eq!(cleaner["image"], "python:3.11-slim");
        assert_eq!(cleaner["command"], json!(["rm", "-rf", "--"]));
        assert_eq!(
            cleaner["args"],
            json!(["/opt/rexec/environment/1", "/opt/rexec/environment/2"])
        );
        assert_eq!(
            cleaner["volumeMounts"],
            json!([{"name": "environments", "mountPath": "/opt/rexec/environment", "subPath": "a".repeat(64)}])
        );
        assert_eq!(cleaner["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(restricted_violations(pod), Vec::<String>::new());
    }

    #[test]
    fn a_build_writes_its_own_directory_only_and_holds_no_privilege() {
        let s = settings();
        let r = reqs(&["python==3.11", "scipy; python_version > \"3.8\""]);
        let env = Environment::of(&s, &r);
        let job = serde_json::to_value(build_job(&env, &s, &owner(), &r, 2)).unwrap();
        assert_eq!(job["metadata"]["namespace"], "rexec-environments");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let builder = &pod["containers"][0];
        assert_eq!(builder["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(
            builder["volumeMounts"][0],
            json!({"name": "environments", "mountPath": "/opt/rexec/env", "subPath": format!("{}/2", env.key)})
        );
        assert!(
            !serde_json::to_string(&job).unwrap().contains("scipy"),
            "requirements stay in the ConfigMap"
        );
        let files = build_files(&env, &s, &r, 2);
        assert_eq!(
            files.data.unwrap()[REQUIREMENTS_FILE],
            "scipy; python_version > \"3.8\"\n"
        );
    }
}
