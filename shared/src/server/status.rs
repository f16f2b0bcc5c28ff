//! How a caller's server is doing, read from its pod's status and Events, in words a person
//! can act on.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Phase {
    /// Created, waiting for a node or an image.
    Pending,
    /// The rexec-server source and the requirements are being installed.
    Installing,
    /// The server runs and is connected.
    Ready,
    /// Something went wrong; `reason` says what.
    Failed,
    /// Being removed.
    Terminating,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub phase: Phase,
    pub ready: bool,
    pub reason: Option<String>,
}

impl Assessment {
    fn new(phase: Phase, reason: Option<String>) -> Self {
        Self {
            phase,
            ready: phase == Phase::Ready,
            reason,
        }
    }
}

/// The phase of a server whose pod is `pod` (absent: not created yet), with the pod's Events.
pub fn assess(pod: Option<&Pod>, events: &[Event]) -> Assessment {
    let Some(pod) = pod else {
        return Assessment::new(Phase::Pending, Some("The server is being created.".into()));
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Assessment::new(Phase::Terminating, None);
    }
    let Some(status) = &pod.status else {
        return Assessment::new(Phase::Pending, None);
    };
    let inits = status.init_container_statuses.as_deref().unwrap_or_default();
    let mains = status.container_statuses.as_deref().unwrap_or_default();
    for c in inits.iter().chain(mains) {
        if let Some(reason) = failure(c, inits.iter().any(|i| i.name == c.name)) {
            return Assessment::new(Phase::Failed, Some(with_event(reason, events)));
        }
    }
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => Assessment::new(
            Phase::Failed,
            Some(with_event(
                format!(
                    "The server stopped{}.",
                    status.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                ),
                events,
            )),
        ),
        Some("Running") if condition(pod, "Ready") => Assessment::new(Phase::Ready, None),
        Some("Running") => Assessment::new(Phase::Pending, Some("The server is starting.".into())),
        _ if inits
            .iter()
            .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())) =>
        {
            Assessment::new(Phase::Installing, Some("Installing the requirements.".into()))
        }
        _ => {
            let unschedulable = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .and_then(|c| c.message.clone());
            Assessment::new(
                Phase::Pending,
                unschedulable.map(|m| format!("Waiting for room on the cluster: {m}")),
            )
        }
    }
}

fn condition(pod: &Pod, kind: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// What a container's state says went wrong, if anything.
fn failure(c: &ContainerStatus, init: bool) -> Option<String> {
    let waiting = c
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref());
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let terminated = c
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .or(last);
    if matches!(waiting, Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName")) {
        return Some(format!(
            "The image of container {} cannot be pulled ({}). Check REXEC_SERVER_IMAGE and the python version.",
            c.name,
            waiting.unwrap_or_default()
        ));
    }
    if terminated.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")) {
        return Some(format!(
            "Container {} ran out of memory (OOMKilled). Use fewer or lighter packages, or ask for a larger memory limit.",
            c.name
        ));
    }
    let crashing = waiting == Some("CrashLoopBackOff") || (c.restart_count > 0 && terminated.is_some());
    if !crashing {
        return None;
    }
    let exit = terminated
        .map(|t| format!(" (exit code {})", t.exit_code))
        .unwrap_or_default();
    Some(match (init, c.name.as_str()) {
        (true, "install") => format!(
            "pip install failed{exit}: a requirement cannot be installed for this python version. Check the package names and versions, then spawn again with force_reinstall."
        ),
        (true, "fetch-server") => {
            format!("The rexec-server source cannot be fetched{exit}. Check REXEC_SERVER_SOURCE.")
        }
        _ => format!(
            "Container {} keeps crashing{exit} (CrashLoopBackOff). Its logs tell why.",
            c.name
        ),
    })
}

/// Adds the latest Warning Event's message, which often names the cause exactly.
fn with_event(reason: String, events: &[Event]) -> String {
    let latest = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        });
    match latest.and_then(|e| e.message.as_deref()) {
        Some(message) => format!("{reason} Last event: {message}"),
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "rexec-server-1"}, "status": status})).unwrap()
    }

    fn waiting(name: &str, reason: &str) -> serde_json::Value {
        json!({"name": name, "ready": false, "restartCount": 2, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": reason}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}})
    }

    #[test]
    fn phases() {
        assert_eq!(assess(None, &[]).phase, Phase::Pending);
        let installing = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "install", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}]}));
        assert_eq!(assess(Some(&installing), &[]).phase, Phase::Installing);
        let ready = pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        let a = assess(Some(&ready), &[]);
        assert_eq!((a.phase, a.ready, a.reason), (Phase::Ready, true, None));
        let starting = pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}));
        assert_eq!(assess(Some(&starting), &[]).phase, Phase::Pending);
        let mut deleting = ready.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        assert_eq!(assess(Some(&deleting), &[]).phase, Phase::Terminating);
    }

    #[test]
    fn failures_say_what_to_do() {
        let cases = [
            (
                json!({"phase": "Pending", "initContainerStatuses": [waiting("install", "ImagePullBackOff")]}),
                "cannot be pulled",
            ),
            (
                json!({"phase": "Pending", "initContainerStatuses": [waiting("install", "CrashLoopBackOff")]}),
                "pip install failed (exit code 1)",
            ),
            (
                json!({"phase": "Pending", "initContainerStatuses": [waiting("fetch-server", "CrashLoopBackOff")]}),
                "source cannot be fetched",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [waiting("server", "CrashLoopBackOff")]}),
                "keeps crashing",
            ),
            (
                json!({"phase": "Running", "containerStatuses": [{"name": "server", "ready": false, "restartCount": 1, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
                "out of memory",
            ),
            (json!({"phase": "Failed", "reason": "Evicted"}), "stopped (Evicted)"),
        ];
        for (status, expected) in cases {
            let a = assess(Some(&pod(status.clone())), &[]);
            assert_eq!(a.phase, Phase::Failed, "{status}");
            assert!(
                a.reason.as_deref().unwrap().contains(expected),
                "{:?} lacks {expected:?}",
                a.reason
            );
        }
    }

    #[test]
    fn the_latest_warning_is_quoted() {
        let events: Vec<Event> = serde_json::from_value(json!([
            {"metadata": {"name": "a"}, "involvedObject": {}, "type": "Warning", "message": "old", "lastTimestamp": "2026-11-22T10:00:00Z"},
            {"metadata": {"name": "b"}, "involvedObject": {}, "type": "Warning", "message": "Failed to pull image: not found", "lastTimestamp": "2026-11-22T10:05:00Z"},
            {"metadata": {"name": "c"}, "involvedObject": {}, "type": "Normal", "message": "Scheduled", "lastTimestamp": "2026-11-22T10:06:00Z"},
        ]))
        .unwrap();
        let failing = pod(json!({"phase": "Pending", "initContainerStatuses": [waiting("install", "ErrImagePull")]}));
        let reason = assess(Some(&failing), &events).reason.unwrap();
        assert!(
            reason.ends_with("Last event: Failed to pull image: not found"),
            "{reason}"
        );
    }
}
