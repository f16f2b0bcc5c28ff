//! How a caller's server is doing, read from its pod's status and Events, in words a person
//! can act on: a coarse [`Phase`], the [`Stage`] a person can follow, and once the environment
//! is built the versions a client must match.
//!
//! Failures that will not cure themselves are reported at once: an image that cannot be pulled,
//! an install or fetch that exited non-zero (its last log lines, the container's termination
//! message, quoted), a pod no node can take (unless the cluster autoscaler is adding one), a
//! server that keeps crashing or runs out of memory.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod, PodCondition, PodStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::time::{Duration, SystemTime};

use super::claim::Claim;
use super::manifests::{SERVER_CONTAINER, WAIT_CONTAINER};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Phase {
    /// Created, waiting for a node, an image, or the connection to the broker.
    Pending,
    /// The environment is being built.
    Installing,
    /// The server runs and is connected to the broker.
    Ready,
    /// Something went wrong; `reason` says what.
    Failed,
    /// Being removed.
    Terminating,
}

/// Where a server is on its way to ready, in the order it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for a node.
    Pending,
    /// On a node, its image being pulled.
    Scheduled,
    /// The environment's build is fetching the server's source.
    Fetching,
    /// The environment is being built (the requirements installed), by this spawn or by another
    /// caller's with the same requirements; `progress` says how far.
    Building,
    /// The environment is ready; the server is being started.
    Starting,
    /// The server runs and is connecting to the broker.
    Connecting,
    /// Connected to the broker: remote calls reach it.
    Ready,
    Failed,
    Terminating,
}

impl Phase {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Installing,
        Self::Ready,
        Self::Failed,
        Self::Terminating,
    ];
}

impl Stage {
    pub fn phase(self) -> Phase {
        match self {
            Self::Pending | Self::Scheduled | Self::Starting | Self::Connecting => Phase::Pending,
            Self::Fetching | Self::Building => Phase::Installing,
            Self::Ready => Phase::Ready,
            Self::Failed => Phase::Failed,
            Self::Terminating => Phase::Terminating,
        }
    }

    /// Whether the server will get no further without someone acting.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Terminating)
    }
}

/// The versions a client's must match to deserialise the server's results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Versions {
    #[schema(example = "3.11.14")]
    pub python: Option<String>,
    #[schema(example = "0.4.0")]
    pub dill: Option<String>,
    #[serde(rename = "scidx-rexec")]
    #[schema(example = "0.1.0")]
    pub scidx_rexec: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub stage: Stage,
    pub reason: Option<String>,
    pub versions: Option<Versions>,
}

impl Assessment {
    fn new(stage: Stage, reason: Option<String>) -> Self {
        Self {
            stage,
            reason,
            versions: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.stage.phase()
    }

    pub fn ready(&self) -> bool {
        self.stage == Stage::Ready
    }
}

/// How the server whose pod is `pod` (absent: not created yet) is doing, with the pod's Events.
pub fn assess(pod: Option<&Pod>, events: &[Event]) -> Assessment {
    let Some(pod) = pod else {
        return Assessment::new(Stage::Pending, Some("The server is being created.".into()));
    };
    let mut assessment = stage(pod, events);
    assessment.versions = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|inits| inits.iter().find(|c| c.name == WAIT_CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code == 0)
        .and_then(|t| serde_json::from_str(t.message.as_deref()?).ok());
    assessment
}

/// How the generation `claim` records is doing: the failure recorded for it (its pod is gone or
/// going), its pod's assessment, or a failure when it was not ready within `start_timeout` of
/// its pod's creation.
pub fn assess_server(
    claim: &Claim,
    pod: Option<&Pod>,
    events: &[Event],
    start_timeout: Duration,
    now: SystemTime,
) -> Assessment {
    if claim.terminated {
        return Assessment::new(Stage::Terminating, Some("The server is being removed.".into()));
    }
    if let Some(failure) = &claim.failure {
        return Assessment::new(Stage::Failed, Some(failure.clone()));
    }
    let mut assessment = assess(pod, events);
    // Not ready since the pod's creation, or since it lost its readiness (the Ready
    // condition's last transition): a server that was ready gets the same time to reconnect.
    let created = pod
        .and_then(|p| p.metadata.creation_timestamp.as_ref())
        .map(|t| SystemTime::from(t.0));
    let unready_since = pod
        .and_then(|p| p.status.as_ref()?.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| SystemTime::from(t.0));
    let since = created.max(unready_since);
    let unready = since.and_then(|t| now.duration_since(t).ok());
    if !assessment.stage.is_final() && unready.is_some_and(|d| d > start_timeout) {
        assessment.reason = Some(format!(
            "The server was not ready within {} s (REXEC_START_TIMEOUT); it was at the stage {:?}: {}",
            start_timeout.as_secs(),
            assessment.stage,
            assessment.reason.as_deref().unwrap_or("no reason given.")
        ));
        assessment.stage = Stage::Failed;
    }
    assessment
}

/// Whether a server's pod is ready now.
pub fn ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Whether a server's pod was ready and lost its readiness: its server runs, and the Ready
/// condition turned false after the server started (before it, it was never true).
pub fn lost_readiness(pod: &Pod) -> bool {
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == SERVER_CONTAINER))
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| SystemTime::from(t.0));
    let lost_at = ready_condition(pod)
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| SystemTime::from(t.0));
    matches!((started, lost_at), (Some(started), Some(lost)) if lost > started)
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

fn stage(pod: &Pod, events: &[Event]) -> Assessment {
    if pod.metadata.deletion_timestamp.is_some() {
        return Assessment::new(Stage::Terminating, Some("The server is being removed.".into()));
    }
    let Some(status) = &pod.status else {
        return Assessment::new(Stage::Pending, None);
    };
    let inits = status.init_container_statuses.as_deref().unwrap_or_default();
    let mains = status.container_statuses.as_deref().unwrap_or_default();
    for c in inits.iter().chain(mains) {
        if let Some(reason) = failure(c, inits.iter().any(|i| i.name == c.name)) {
            return Assessment::new(Stage::Failed, Some(with_event(reason, events)));
        }
    }
    let running = |c: &&ContainerStatus| c.state.as_ref().is_some_and(|s| s.running.is_some());
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => {
            return Assessment::new(
                Stage::Failed,
                Some(with_event(
                    format!(
                        "The server stopped{}.",
                        status.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                    ),
                    events,
                )),
            );
        }
        Some("Running") if condition(pod, "Ready") => return Assessment::new(Stage::Ready, None),
        Some("Running") if mains.iter().any(|c| running(&c)) => {
            return Assessment::new(
                Stage::Connecting,
                Some("The server runs and is connecting to the broker.".into()),
            );
        }
        Some("Running") => {
            return Assessment::new(Stage::Starting, Some("The server is starting.".into()));
        }
        _ => {}
    }
    if inits.iter().any(|c| running(&c)) {
        return Assessment::new(Stage::Building, Some("Building the environment.".into()));
    }
    if !inits.is_empty() && condition(pod, "Initialized") {
        return Assessment::new(Stage::Starting, Some("The server is starting.".into()));
    }
    scheduling(pod, status, events)
}

/// The stage of a pod that has not started: waiting for a node, or refused by every one.
fn scheduling(pod: &Pod, status: &PodStatus, events: &[Event]) -> Assessment {
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    // Waiting, not failing: the cluster autoscaler announces a node on its way, and a claim made
    // with the pod (its environments' volume) is bound a moment later, when the scheduler tries
    // again. Anything else will not change.
    let waits = |c: &PodCondition| {
        events.iter().any(|e| e.reason.as_deref() == Some("TriggeredScaleUp"))
            || c.message.as_deref().is_some_and(|m| m.contains(UNBOUND_CLAIMS))
    };
    match unschedulable {
        Some(c) if !waits(c) => Assessment::new(
            Stage::Failed,
            Some(format!(
                "No node can run the server: {}",
                c.message.as_deref().unwrap_or("the scheduler gave no reason.")
            )),
        ),
        Some(c) if c.message.as_deref().is_some_and(|m| m.contains(UNBOUND_CLAIMS)) => Assessment::new(
            Stage::Pending,
            Some("Waiting for the environments' volume to be bound.".into()),
        ),
        Some(c) => Assessment::new(
            Stage::Pending,
            Some(format!(
                "Waiting for a node the cluster is adding: {}",
                c.message.as_deref().unwrap_or_default()
            )),
        ),
        None if condition(pod, "PodScheduled") => {
            Assessment::new(Stage::Scheduled, Some("Pulling the server's image.".into()))
        }
        None => Assessment::new(Stage::Pending, Some("Waiting for a node.".into())),
    }
}

/// What the scheduler says of a pod whose claim is not bound yet (its volume binding plugin).
const UNBOUND_CLAIMS: &str = "unbound immediate PersistentVolumeClaims";

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
        .or(last.filter(|t| t.exit_code != 0));
    if let Some(reason @ ("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName")) = waiting {
        return Some(format!(
            "The image of container {} cannot be pulled ({reason}). Check REXEC_SERVER_IMAGE and the python version.",
            c.name
        ));
    }
    if terminated.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")) {
        return Some(format!(
            "Container {} ran out of memory (OOMKilled). Use fewer or lighter packages, or ask for a larger memory limit.",
            c.name
        ));
    }
    let exit = terminated
        .map(|t| format!(" (exit code {})", t.exit_code))
        .unwrap_or_default();
    let output = terminated
        .and_then(|t| t.message.as_deref())
        .map(|m| m.trim_end().trim_start_matches('\n'))
        .filter(|m| !m.is_empty())
        .map(|m| format!(" Its last lines:\n{m}"))
        .unwrap_or_default();
    // An init container that failed once fails again: what it does depends on nothing else.
    if init && terminated.is_some() {
        return Some(format!(
            "The environment cannot be built{exit}: check the package names and versions for this python version, then spawn again.{output}"
        ));
    }
    let crashing = waiting == Some("CrashLoopBackOff") || (c.restart_count > 0 && terminated.is_some());
    if !crashing {
        return None;
    }
    Some(format!(
        "Container {} keeps crashing{exit} (CrashLoopBackOff).{output}",
        c.name
    ))
}

/// The lines the build and the wait for it print at each step: the wait's log follows the
/// build's, and its last step line says where the build is.
pub const STEP_WAITING: &str = "rexec: waiting for the environment's build";
pub const STEP_FETCHING: &str = "rexec: fetching the rexec-server source";
pub const STEP_INSTALLING: &str = "rexec: installing the requirements";
/// The longest progress line shown.
const PROGRESS_CHARS: usize = 300;

/// Where a build is, read from the tail of the server's wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildProgress {
    pub stage: Stage,
    pub reason: String,
    /// The installer's latest line, control characters removed.
    pub latest: Option<String>,
}

/// Where the build is, from the last lines of the wait container's log (any bytes).
pub fn build_progress(tail: &str) -> BuildProgress {
    let lines: Vec<&str> = tail.lines().collect();
    let step = lines.iter().rposition(|l| l.starts_with("rexec: "));
    let latest = lines[step.map_or(0, |i| i + 1)..]
        .iter()
        .rev()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control())
                .take(PROGRESS_CHARS)
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .find(|l| !l.is_empty());
    let (stage, reason) = match step.map(|i| lines[i].trim_end()) {
        Some(STEP_FETCHING) => (
            Stage::Fetching,
            "Building the environment: fetching the server's source.",
        ),
        Some(STEP_WAITING) => (Stage::Building, "Waiting for the environment's build to start."),
        _ => (
            Stage::Building,
            "Building the environment: installing the requirements.",
        ),
    };
    BuildProgress {
        stage,
        reason: reason.to_owned(),
        latest,
    }
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

    fn running(name: &str) -> serde_json::Value {
        json!({"name": name, "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}})
    }

    fn done(name: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "ready": true, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}})
    }

    #[test]
    fn stages_in_the_order_a_server_goes() {
        let scheduled = json!([{"type": "PodScheduled", "status": "True"}]);
        let cases = [
            (json!({"phase": "Pending"}), Stage::Pending),
            (json!({"phase": "Pending", "conditions": scheduled}), Stage::Scheduled),
            (
                json!({"phase": "Pending", "conditions": scheduled, "initContainerStatuses": [running("wait-for-environment")]}),
                Stage::Building,
            ),
            (
                json!({"phase": "Pending", "conditions": [{"type": "Initialized", "status": "True"}],
                    "initContainerStatuses": [done("wait-for-environment", "{}")]}),
                Stage::Starting,
            ),
            (
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [running("server")]}),
                Stage::Connecting,
            ),
            (
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
                Stage::Ready,
            ),
        ];
        for (status, stage) in cases {
            let a = assess(Some(&pod(status.clone())), &[]);
            assert_eq!(a.stage, stage, "{status}");
            assert_eq!(a.ready(), stage == Stage::Ready);
        }
        assert_eq!(assess(None, &[]).stage, Stage::Pending);
        let mut deleting = pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        assert_eq!(assess(Some(&deleting), &[]).phase(), Phase::Terminating);
        assert_eq!(Stage::Building.phase(), Phase::Installing);
        assert_eq!(Stage::Fetching.phase(), Phase::Installing);
        assert_eq!(Stage::Connecting.phase(), Phase::Pending);
    }

    #[test]
    fn the_versions_come_from_the_build() {
        let built = pod(json!({"phase": "Running", "initContainerStatuses": [
            done("wait-for-environment", r#"{"python": "3.11.14", "dill": "0.4.0", "scidx-rexec": "0.1.0"}"#)]}));
        let versions = assess(Some(&built), &[]).versions.unwrap();
        assert_eq!(
            (
                versions.python.as_deref(),
                versions.dill.as_deref(),
                versions.scidx_rexec.as_deref()
            ),
            (Some("3.11.14"), Some("0.4.0"), Some("0.1.0"))
        );
        let building = pod(json!({"phase": "Pending", "initContainerStatuses": [running("wait-for-environment")]}));
        assert_eq!(assess(Some(&building), &[]).versions, None);
    }

    #[test]
    fn failures_say_what_to_do_at_once() {
        let first_exit = json!({"name": "wait-for-environment", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error",
                "message": "  x No solution found when resolving dependencies:\n  ╰─▶ Because nosuchpkg was not found in the package registry"}}});
        let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]});
        let cases = [
            (
                json!({"phase": "Pending", "initContainerStatuses": [waiting("wait-for-environment", "ErrImagePull")]}),
                "cannot be pulled (ErrImagePull)",
            ),
            (
                json!({"phase": "Pending", "initContainerStatuses": [first_exit]}),
                "cannot be built (exit code 1): check the package names and versions for this python version, then spawn again. Its last lines:\n  x No solution found",
            ),
            (
                unschedulable.clone(),
                "No node can run the server: 0/3 nodes are available: 3 Insufficient memory.",
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
            assert_eq!(a.phase(), Phase::Failed, "{status}");
            assert!(
                a.reason.as_deref().unwrap().contains(expected),
                "{:?} lacks {expected:?}",
                a.reason
            );
        }
        // A server that exited once is restarted, not failed; a node on its way is waited for.
        let restarted = json!({"phase": "Running", "containerStatuses": [{"name": "server", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
        assert_ne!(assess(Some(&pod(restarted)), &[]).stage, Stage::Failed);
        let scale_up: Vec<Event> = serde_json::from_value(json!([{"metadata": {"name": "s"}, "involvedObject": {},
            "type": "Normal", "reason": "TriggeredScaleUp", "message": "pod triggered scale-up"}]))
        .unwrap();
        assert_eq!(assess(Some(&pod(unschedulable)), &scale_up).stage, Stage::Pending);
        // A claim made with the pod is bound a moment later: the scheduler tries again.
        let unbound = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. not found"}]});
        let waiting = assess(Some(&pod(unbound)), &[]);
        assert_eq!(
            (waiting.stage, waiting.reason.as_deref()),
            (
                Stage::Pending,
                Some("Waiting for the environments' volume to be bound.")
            )
        );
    }

    #[test]
    fn a_build_is_followed_through_its_steps() {
        let cases = [
            ("", Stage::Building, "install", None),
            (STEP_WAITING, Stage::Building, "Waiting", None),
            (
                &format!("{STEP_WAITING}\n{STEP_FETCHING}\n"),
                Stage::Fetching,
                "fetching",
                None,
            ),
            (
                &format!("{STEP_WAITING}\n{STEP_FETCHING}\n{STEP_INSTALLING} with uv\nResolved 7 packages in 12ms\n\n"),
                Stage::Building,
                "installing",
                Some("Resolved 7 packages in 12ms"),
            ),
            // The step line scrolled out of the tail: the installer is past fetching.
            (
                "Collecting six\r\n  Downloading six-1.17.0-py2.py3-none-any.whl\x1b[0m\n",
                Stage::Building,
                "installing",
                Some("Downloading six-1.17.0-py2.py3-none-any.whl[0m"),
            ),
        ];
        for (tail, stage, reason, latest) in cases {
            let p = build_progress(tail);
            assert_eq!((p.stage, p.latest.as_deref()), (stage, latest), "{tail:?}");
            assert!(p.reason.contains(reason), "{tail:?}: {}", p.reason);
        }
        let long = build_progress(&format!("{STEP_INSTALLING}\n{}\n", "x".repeat(5000)));
        assert_eq!(long.latest.unwrap().len(), PROGRESS_CHARS);
    }

    proptest::proptest! {
        #[test]
        fn any_log_tail_is_read(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let p = build_progress(&String::from_utf8_lossy(&bytes));
            proptest::prop_assert!(matches!(p.stage, Stage::Fetching | Stage::Building));
            let latest = p.latest.unwrap_or_default();
            proptest::prop_assert!(latest.chars().count() <= PROGRESS_CHARS && !latest.chars().any(char::is_control));
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
        let failing = pod(
            json!({"phase": "Pending", "initContainerStatuses": [waiting("wait-for-environment", "ErrImagePull")]}),
        );
        let reason = assess(Some(&failing), &events).reason.unwrap();
        assert!(
            reason.ends_with("Last event: Failed to pull image: not found"),
            "{reason}"
        );
    }
}
