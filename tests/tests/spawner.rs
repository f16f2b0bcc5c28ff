//! The lifecycle of a caller's server against the Kubernetes stand-in.

use std::sync::Arc;
use std::time::Duration;

use rexec_shared::config::Vars;
use rexec_shared::http::error::ApiError;
use rexec_shared::identity::Identity;
use rexec_shared::server::error::ServerError;
use rexec_shared::server::requirements::{Requirements, RequirementsPolicy};
use rexec_shared::server::spawn_plan::Spawned;
use rexec_shared::server::spawner::{Server, Spawner, Terminated};
use rexec_shared::server::status::{Phase, STEP_FETCHING, STEP_INSTALLING, STEP_WAITING, Stage};
use rexec_stand_ins::kube::{Behaviour, Fault, KubeStandIn, KubeconfigFile, PodOutcome};
use rexec_tests::stack::{UNFETCHED_SOURCE_SHA256, UNPULLED_IMAGE_DIGESTS};
use serde_json::json;

/// The answer the API gives for `err`: how a caller sees it.
fn answer(err: ServerError) -> ApiError {
    err.into()
}

struct Setup {
    cluster: KubeStandIn,
    spawner: Arc<Spawner>,
    _kubeconfig: KubeconfigFile,
}

/// A spawner that answers as soon as the objects are written (no wait for the server).
async fn setup() -> Setup {
    setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "0")]).await
}

async fn setup_with(settings: &[(&str, &str)]) -> Setup {
    let cluster = KubeStandIn::start().await;
    let kubeconfig = cluster.write_kubeconfig("t");
    let mut pairs = vec![
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("KUBE_TIMEOUT_SECONDS", "2"),
        ("REXEC_SERVER_SOURCE_SHA256", UNFETCHED_SOURCE_SHA256),
        ("REXEC_SERVER_IMAGE_DIGESTS", UNPULLED_IMAGE_DIGESTS),
    ];
    pairs.extend_from_slice(settings);
    let spawner = Spawner::from_vars(&Vars::from_pairs(pairs)).unwrap();
    Setup {
        cluster,
        spawner: Arc::new(spawner),
        _kubeconfig: kubeconfig,
    }
}

fn caller(sub: &str) -> Identity {
    Identity {
        sub: sub.into(),
        username: sub.to_lowercase(),
        roles: vec![],
        groups: vec![],
        client: None,
        expires_at: None,
    }
}

fn reqs(lines: &[&str]) -> Requirements {
    RequirementsPolicy::from_vars(&Vars::default())
        .unwrap()
        .check(lines)
        .unwrap()
}

const NS: &str = "rexec-u-1";
const ENVIRONMENTS: &str = "rexec-environments";

/// u-1's spawn of the plainest environment, which must be answered.
async fn first_spawn(s: &Setup) -> (Spawned, Server) {
    s.spawner
        .spawn(&caller("u-1"), &reqs(&["python==3.11"]), false)
        .await
        .unwrap()
}

/// The environments' builds: their Jobs, oldest first.
fn builds(s: &Setup) -> Vec<serde_json::Value> {
    let mut jobs: Vec<serde_json::Value> = s
        .cluster
        .names("jobs", ENVIRONMENTS)
        .iter()
        .map(|name| s.cluster.get("jobs", ENVIRONMENTS, name).unwrap())
        .collect();
    jobs.sort_by_key(|j| {
        j["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    jobs
}

/// Whether a build's Job has ended.
fn ended(job: &serde_json::Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| matches!(c["type"].as_str(), Some("Complete" | "Failed")))
    })
}

/// Waits until every build has ended (the stand-in's builds take `install_time`): a caller's
/// next build of another environment is refused until theirs has.
async fn builds_end(s: &Setup) {
    for _ in 0..200 {
        if builds(s).iter().all(ended) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the builds did not end");
}

/// The requirement files of the environments' builds.
fn build_files(s: &Setup) -> Vec<serde_json::Value> {
    s.cluster
        .names("configmaps", ENVIRONMENTS)
        .iter()
        .map(|name| s.cluster.get("configmaps", ENVIRONMENTS, name).unwrap())
        .collect()
}

/// The build a server's pod runs on.
fn build_of(pod: &serde_json::Value) -> String {
    pod["metadata"]["labels"]["rexec.ndp.io/build"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_first_spawn_creates_the_namespace_its_guard_rails_the_claim_and_the_pod() {
    let s = setup().await;
    let (outcome, view) = s
        .spawner
        .spawn(&caller("u-1"), &reqs(&["python==3.11", "numpy>=1.26"]), false)
        .await
        .unwrap();
    assert_eq!(outcome, Spawned::Created);
    assert_eq!(
        (view.namespace.as_str(), view.name.as_str(), view.generation),
        (NS, "rexec-server-1", 1)
    );
    assert_eq!(view.requirements, vec!["python==3.11", "numpy>=1.26"]);
    assert_eq!(view.phase, Phase::Pending);

    let ns = s.cluster.get("namespaces", "", NS).unwrap();
    assert_eq!(ns["metadata"]["labels"]["app.kubernetes.io/managed-by"], "rexec-lambda");
    assert_eq!(ns["metadata"]["annotations"]["rexec.ndp.io/sub"], "u-1");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert!(s.cluster.get("resourcequotas", NS, "rexec-quota").is_some());
    assert!(s.cluster.get("limitranges", NS, "rexec-limits").is_some());
    assert!(s.cluster.get("networkpolicies", NS, "rexec-egress").is_some());
    let claim = s.cluster.get("configmaps", NS, "rexec-server").unwrap();
    assert_eq!(
        claim["metadata"]["annotations"]["rexec.ndp.io/requirements"],
        r#"["python==3.11","numpy>=1.26"]"#
    );
    assert_eq!(build_files(&s)[0]["data"]["requirements.txt"], "numpy>=1.26\n");
    let pod = s.cluster.get("pods", NS, "rexec-server-1").unwrap();
    let env = &pod["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "REXEC_USER_ID", "value": "u-1"}))
    );
}

#[tokio::test]
async fn the_same_requirements_reuse_the_server() {
    let s = setup().await;
    let who = caller("u-1");
    s.spawner
        .spawn(&who, &reqs(&["python==3.11", "numpy"]), false)
        .await
        .unwrap();
    let (outcome, view) = s
        .spawner
        .spawn(&who, &reqs(&["numpy", "python==3.11"]), false)
        .await
        .unwrap();
    assert_eq!(outcome, Spawned::Reused);
    assert_eq!(view.generation, 1);
    assert_eq!(s.cluster.count("POST", "pods"), 1);
}

#[tokio::test]
async fn different_requirements_are_a_conflict_until_forced() {
    let s = setup().await;
    s.cluster.set_behaviour(Behaviour {
        pod_termination: Duration::from_secs(1),
        ..Behaviour::default()
    });
    let who = caller("u-1");
    s.spawner
        .spawn(&who, &reqs(&["python==3.11", "numpy"]), false)
        .await
        .unwrap();
    builds_end(&s).await;
    let err = answer(
        s.spawner
            .spawn(&who, &reqs(&["python==3.11", "pandas"]), false)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (409, "different_requirements"));
    assert!(
        err.detail.contains("numpy") && err.detail.contains("force_reinstall=True"),
        "{}",
        err.detail
    );

    let (outcome, view) = s
        .spawner
        .spawn(&who, &reqs(&["python==3.11", "pandas"]), true)
        .await
        .unwrap();
    assert_eq!(outcome, Spawned::Replaced);
    assert_eq!((view.generation, view.name.as_str()), (2, "rexec-server-2"));
    assert!(s.cluster.get("pods", NS, "rexec-server-2").is_some());
    let old = s.cluster.get("pods", NS, "rexec-server-1");
    assert!(
        old.is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string()),
        "the old server goes"
    );
    assert_eq!(
        s.cluster.get("configmaps", NS, "rexec-server").unwrap()["metadata"]["annotations"]["rexec.ndp.io/requirements"],
        r#"["python==3.11","pandas"]"#
    );

    // The quota holds two servers: while the first is still stopping, a third waits.
    let err = answer(
        s.spawner
            .spawn(&who, &reqs(&["python==3.11", "pandas"]), true)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (409, "quota_exceeded"));
    // The second server went as the third was refused: the caller has none until they spawn.
    assert!(s.spawner.servers().describe(&who.sub).await.unwrap().is_none());
    tokio::time::sleep(s.cluster.behaviour().pod_termination * 2).await;
    let (outcome, view) = s
        .spawner
        .spawn(&who, &reqs(&["python==3.11", "pandas"]), true)
        .await
        .unwrap();
    assert_eq!((outcome, view.generation), (Spawned::Created, 4));
    let (outcome, view) = s
        .spawner
        .spawn(&who, &reqs(&["python==3.11", "pandas"]), true)
        .await
        .unwrap();
    assert_eq!(
        (outcome, view.generation),
        (Spawned::Replaced, 5),
        "force replaces even the same requirements"
    );
}

#[tokio::test]
async fn describe_follows_the_pod_to_ready() {
    let s = setup().await;
    let who = caller("u-1");
    assert!(s.spawner.servers().describe(&who.sub).await.unwrap().is_none());
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    let view = s.spawner.servers().describe(&who.sub).await.unwrap().unwrap();
    assert_eq!(view.phase, Phase::Installing, "{view:?}");
    tokio::time::sleep(s.cluster.behaviour().install_time + s.cluster.behaviour().start_time).await;
    let view = s.spawner.servers().describe(&who.sub).await.unwrap().unwrap();
    assert_eq!((view.phase, view.ready, view.reason), (Phase::Ready, true, None));
    assert!(view.created.is_some_and(|created| created <= view.seen));
}

#[tokio::test]
async fn failures_are_explained() {
    let cases = [
        (PodOutcome::ImagePullError, "cannot be pulled"),
        (PodOutcome::InstallFails, "cannot be built (exit code 1)"),
        (PodOutcome::CrashLoop, "keeps crashing"),
        (PodOutcome::OutOfMemory, "out of memory"),
    ];
    for (outcome, expected) in cases {
        let s = setup().await;
        s.cluster.set_behaviour(Behaviour {
            pod_outcome: outcome,
            ..Behaviour::default()
        });
        s.spawner
            .spawn(&caller("u-1"), &reqs(&["python==3.11"]), false)
            .await
            .unwrap();
        tokio::time::sleep(s.cluster.behaviour().install_time + Duration::from_millis(50)).await;
        let view = s.spawner.servers().describe("u-1").await.unwrap().unwrap();
        assert_eq!(view.phase, Phase::Failed, "{outcome:?}: {view:?}");
        let reason = view.reason.unwrap();
        assert!(
            reason.contains(expected) && reason.contains("Last event:"),
            "{outcome:?}: {reason}"
        );
    }
}

#[tokio::test]
async fn terminate_removes_the_server_and_keeps_the_namespace() {
    let s = setup().await;
    let who = caller("u-1");
    assert_eq!(
        s.spawner.servers().terminate(&who.sub).await.unwrap(),
        Terminated::NothingThere
    );
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    assert_eq!(
        s.spawner.servers().terminate(&who.sub).await.unwrap(),
        Terminated::Deleted
    );
    let view = s.spawner.servers().describe(&who.sub).await.unwrap().unwrap();
    assert_eq!((view.phase, view.stage), (Phase::Terminating, Stage::Terminating));
    assert_eq!(
        s.spawner.servers().terminate(&who.sub).await.unwrap(),
        Terminated::AlreadyTerminating
    );
    tokio::time::sleep(s.cluster.behaviour().pod_termination + Duration::from_millis(50)).await;
    assert!(s.cluster.names("pods", NS).is_empty());
    assert_eq!(
        s.spawner.servers().terminate(&who.sub).await.unwrap(),
        Terminated::NothingThere
    );
    assert!(s.spawner.servers().describe(&who.sub).await.unwrap().is_none());
    let ns = s.cluster.get("namespaces", "", NS).unwrap();
    assert!(ns["metadata"].get("deletionTimestamp").is_none(), "the namespace stays");
    assert!(
        s.cluster.get("networkpolicies", NS, "rexec-egress").is_some(),
        "with its guard rails"
    );
    assert_eq!(s.cluster.count("DELETE", "namespaces"), 0);
}

#[tokio::test]
async fn a_spawn_right_after_terminate_starts_the_next_server_at_once() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "10")]).await;
    s.cluster.set_behaviour(Behaviour {
        // The old server takes its time to stop.
        pod_termination: Duration::from_secs(5),
        ..Behaviour::default()
    });
    let who = caller("u-1");
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    s.spawner.servers().terminate(&who.sub).await.unwrap();
    let (outcome, view) = s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    assert_eq!(
        (outcome, view.generation, view.stage),
        (Spawned::Created, 2, Stage::Ready)
    );
    let old = s.cluster.get("pods", NS, "rexec-server-1").expect("still stopping");
    assert!(old["metadata"]["deletionTimestamp"].is_string());
    let claim = s.cluster.get("configmaps", NS, "rexec-server").unwrap();
    assert!(
        claim["metadata"]["annotations"]
            .get("rexec.ndp.io/terminated")
            .is_none()
    );
}

#[tokio::test]
async fn a_spawn_while_the_namespace_terminates_is_told_to_retry_then_succeeds() {
    let s = setup().await;
    let who = caller("u-1");
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    // Removed by someone else: an operator, the reaper.
    s.cluster.delete("namespaces", "", NS);
    let err = answer(
        s.spawner
            .spawn(&who, &reqs(&["python==3.11"]), false)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (409, "server_terminating"));
    assert!(err.retry_after.is_some());
    assert_eq!(
        s.spawner.servers().describe(&who.sub).await.unwrap().unwrap().phase,
        Phase::Terminating
    );
    assert_eq!(
        s.spawner.servers().terminate(&who.sub).await.unwrap(),
        Terminated::AlreadyTerminating
    );
    tokio::time::sleep(s.cluster.behaviour().namespace_termination + Duration::from_millis(50)).await;
    let (outcome, view) = s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    assert_eq!((outcome, view.generation), (Spawned::Created, 1));
}

#[tokio::test]
async fn creates_refused_by_a_terminating_namespace_are_told_to_retry() {
    let s = setup().await;
    let who = caller("u-1");
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    // The namespace starts terminating between our read and our write.
    s.cluster.inject(
        Some("GET"),
        Some("namespaces"),
        Fault::Latency(Duration::from_secs(1)),
        Some(1),
    );
    let spawner = s.spawner.clone();
    let spawn = tokio::spawn(async move { spawner.spawn(&who, &reqs(&["python==3.11", "x"]), true).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.cluster.delete("namespaces", "", NS);
    let err = answer(spawn.await.unwrap().unwrap_err());
    assert_eq!(err.status.as_u16(), 409, "{err:?}");
    assert!(err.retry_after.is_some() || err.code == "concurrent_change", "{err:?}");
}

#[tokio::test]
async fn an_environment_is_built_once_for_every_caller_who_asks_for_it() {
    let s = setup().await;
    let lines = ["python==3.11", "numpy", "six"];
    let tasks: Vec<_> = ["u-1", "u-2", "u-3", "u-4"]
        .into_iter()
        .map(|who| {
            let spawner = s.spawner.clone();
            tokio::spawn(async move { spawner.spawn(&caller(who), &reqs(&lines), false).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let jobs = builds(&s);
    assert_eq!(jobs.len(), 1, "one build for four callers");
    let job = &jobs[0];
    let pod = s.cluster.get("pods", "rexec-u-2", "rexec-server-1").unwrap();
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    let key = job["metadata"]["annotations"]["rexec.ndp.io/environment"]
        .as_str()
        .unwrap();
    assert_eq!(
        (mount["subPath"].as_str(), mount["readOnly"].as_bool()),
        (Some(format!("{key}/1").as_str()), Some(true)),
        "each server mounts the build's directory, read-only"
    );
    // A caller who comes once it is built reuses it too; other requirements build anew.
    tokio::time::sleep(s.cluster.behaviour().install_time + Duration::from_millis(100)).await;
    s.spawner
        .spawn(&caller("u-5"), &reqs(&["numpy", "six", "python==3.11"]), false)
        .await
        .unwrap();
    assert_eq!(builds(&s).len(), 1);
    s.spawner
        .spawn(&caller("u-6"), &reqs(&["python==3.11", "numpy"]), false)
        .await
        .unwrap();
    assert_eq!(builds(&s).len(), 2);
}

#[tokio::test]
async fn a_stale_or_failed_build_is_built_again() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "0"), ("REXEC_ENV_MAX_AGE", "2")]).await;
    let lines = ["python==3.11", "six"];
    s.spawner.spawn(&caller("u-1"), &reqs(&lines), false).await.unwrap();
    tokio::time::sleep(s.cluster.behaviour().install_time + Duration::from_millis(200)).await;
    s.spawner.spawn(&caller("u-2"), &reqs(&lines), false).await.unwrap();
    assert_eq!(builds(&s).len(), 1, "fresh: used");
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.spawner.spawn(&caller("u-3"), &reqs(&lines), false).await.unwrap();
    assert_eq!(builds(&s).len(), 2, "older than REXEC_ENV_MAX_AGE: built again");
    let pod = |ns: &str| s.cluster.get("pods", ns, "rexec-server-1").unwrap();
    assert_eq!(
        (build_of(&pod("rexec-u-1")), build_of(&pod("rexec-u-3"))),
        ("1".into(), "2".into())
    );

    s.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::InstallFails,
        ..Behaviour::default()
    });
    let failing = ["python==3.11", "nosuchpkg"];
    s.spawner.spawn(&caller("u-4"), &reqs(&failing), false).await.unwrap();
    tokio::time::sleep(s.cluster.behaviour().install_time + Duration::from_millis(200)).await;
    s.cluster.set_behaviour(Behaviour::default());
    s.spawner.spawn(&caller("u-5"), &reqs(&failing), false).await.unwrap();
    let failing_env =
        s.cluster.get("pods", "rexec-u-4", "rexec-server-1").unwrap()["metadata"]["labels"]["rexec.ndp.io/environment"]
            .clone();
    let mut attempts: Vec<(String, bool)> = builds(&s)
        .iter()
        .filter(|j| j["metadata"]["labels"]["rexec.ndp.io/environment"] == failing_env)
        .map(|j| {
            let failed = j["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed" && c["status"] == "True"));
            (
                j["metadata"]["labels"]["rexec.ndp.io/build"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                failed,
            )
        })
        .collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [("1".to_owned(), true), ("2".to_owned(), false)],
        "a failed build is followed by a new one"
    );
}

#[tokio::test]
async fn a_spawn_waits_until_the_server_is_connected() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "10")]).await;
    let (outcome, view) = first_spawn(&s).await;
    assert_eq!(
        (outcome, view.stage, view.ready),
        (Spawned::Created, Stage::Ready, true)
    );
    let versions = view.versions.expect("the build's versions");
    assert_eq!(versions.scidx_rexec.as_deref(), Some("0.1.0"));
    assert!(
        s.cluster
            .permissions_used_by("t")
            .contains(&(String::new(), "pods".into(), "watch".into())),
        "the pod is watched, not polled"
    );
    assert_eq!(s.cluster.count("GET", "pods"), 1, "one watch, no polling");
    let (outcome, view) = first_spawn(&s).await;
    assert_eq!((outcome, view.stage), (Spawned::Reused, Stage::Ready));
}

#[tokio::test]
async fn past_its_wait_a_spawn_answers_with_the_stage_reached() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "1")]).await;
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(30),
        ..Behaviour::default()
    });
    let (outcome, view) = first_spawn(&s).await;
    assert_eq!(
        (outcome, view.stage, view.ready),
        (Spawned::Created, Stage::Building, false)
    );
    assert_eq!(view.reason.as_deref(), Some("Building the environment."));
    assert_eq!(view.progress, None, "a spawn reads the pod's status only");
}

#[tokio::test]
async fn while_the_environment_is_built_get_server_follows_the_build() {
    let s = setup().await;
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(30),
        ..Behaviour::default()
    });
    first_spawn(&s).await;
    let who = caller("u-1");
    let describe = || async { s.spawner.servers().describe(&who.sub).await.unwrap().unwrap() };
    let view = describe().await;
    assert_eq!((view.stage, view.phase), (Stage::Building, Phase::Installing));
    assert_eq!(
        view.reason.as_deref(),
        Some("Building the environment: installing the requirements.")
    );
    // What the wait for the build prints, step by step, as its script does.
    let wait = "wait-for-environment";
    s.cluster
        .write_log(NS, "rexec-server-1", wait, &format!("{STEP_WAITING}\n"));
    let view = describe().await;
    assert_eq!(
        (view.stage, view.reason.as_deref(), view.progress),
        (
            Stage::Building,
            Some("Waiting for the environment's build to start."),
            None
        )
    );
    s.cluster
        .write_log(NS, "rexec-server-1", wait, &format!("{STEP_FETCHING}\n"));
    assert_eq!(describe().await.stage, Stage::Fetching);
    s.cluster.write_log(
        NS,
        "rexec-server-1",
        wait,
        &format!("{STEP_INSTALLING} with uv\nResolved 6 packages in 41ms\nPrepared 6 packages in 380ms\n"),
    );
    let view = describe().await;
    assert_eq!(
        (view.stage, view.progress.as_deref()),
        (Stage::Building, Some("Prepared 6 packages in 380ms"))
    );
    assert_eq!(s.cluster.count("GET", "pods/log"), 4, "one read of the log per answer");
    // A log that cannot be read: the stage from the pod's status, the answer unharmed.
    s.cluster
        .inject(Some("GET"), Some("pods/log"), Fault::Status(500), None);
    let view = describe().await;
    assert_eq!((view.stage, view.progress), (Stage::Building, None));
    s.cluster.clear_faults();
    // Built and started: the log is not read any more.
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::ZERO,
        start_time: Duration::ZERO,
        ..Behaviour::default()
    });
    let reads = s.cluster.count("GET", "pods/log");
    assert_eq!(describe().await.stage, Stage::Ready);
    assert_eq!(s.cluster.count("GET", "pods/log"), reads);
}

#[tokio::test]
async fn a_failed_build_is_told_with_the_installers_lines_and_outlives_its_pod() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "10")]).await;
    s.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::InstallFails,
        ..Behaviour::default()
    });
    let who = caller("u-1");
    let (_, view) = s
        .spawner
        .spawn(&who, &reqs(&["python==3.11", "nosuchpkg"]), false)
        .await
        .unwrap();
    assert_eq!(view.stage, Stage::Failed);
    let reason = view.reason.unwrap();
    assert!(
        reason.contains("cannot be built") && reason.contains("Because nosuchpkg was not found"),
        "{reason}"
    );
    let pod = s.cluster.get("pods", NS, "rexec-server-1");
    assert!(
        pod.is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string()),
        "its pod frees the quota"
    );
    tokio::time::sleep(s.cluster.behaviour().pod_termination + Duration::from_millis(50)).await;
    assert!(s.cluster.get("pods", NS, "rexec-server-1").is_none());
    let later = s.spawner.servers().describe(&who.sub).await.unwrap().unwrap();
    assert_eq!(
        (later.stage, later.reason.as_deref()),
        (Stage::Failed, Some(reason.as_str()))
    );

    // Spawning again tries anew, without force_reinstall, whatever the requirements.
    s.cluster.set_behaviour(Behaviour::default());
    let (outcome, view) = s
        .spawner
        .spawn(&who, &reqs(&["python==3.11", "six"]), false)
        .await
        .unwrap();
    assert_eq!(
        (outcome, view.generation, view.stage),
        (Spawned::Replaced, 2, Stage::Ready)
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_spawn_without_waiting() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "20")]).await;
    s.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::ImagePullError,
        ..Behaviour::default()
    });
    let (_, view) = first_spawn(&s).await;
    assert_eq!(view.stage, Stage::Failed);
    let reason = view.reason.unwrap();
    assert!(
        reason.contains("cannot be pulled") && reason.contains("Last event: Failed to pull image"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_server_not_ready_within_the_start_timeout_fails_and_frees_its_room() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "5"), ("REXEC_START_TIMEOUT", "2")]).await;
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(60),
        ..Behaviour::default()
    });
    let (_, view) = first_spawn(&s).await;
    // The spawn's wait ended first; the start timeout is seen on a later look.
    if view.stage != Stage::Failed {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let view = s.spawner.servers().describe("u-1").await.unwrap().unwrap();
        assert_eq!(view.stage, Stage::Failed);
    }
    let (outcome, view) = first_spawn(&s).await;
    assert_eq!(outcome, Spawned::Replaced, "a timed-out server is tried anew");
    assert_eq!(view.generation, 2);
}

#[tokio::test]
async fn concurrent_spawns_with_the_same_requirements_make_one_server() {
    let s = setup().await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let spawner = s.spawner.clone();
            tokio::spawn(async move {
                spawner
                    .spawn(&caller("u-1"), &reqs(&["python==3.11", "numpy"]), false)
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let (outcome, view) = task.await.unwrap().unwrap();
        assert_eq!(view.generation, 1);
        created += usize::from(outcome == Spawned::Created);
    }
    assert_eq!(created, 1);
    assert_eq!(s.cluster.names("pods", NS), vec!["rexec-server-1"]);
}

#[tokio::test]
async fn concurrent_spawns_with_different_requirements_let_one_win() {
    let s = setup().await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let spawner = s.spawner.clone();
            tokio::spawn(async move {
                let package = format!("pkg{i}");
                spawner
                    .spawn(&caller("u-1"), &reqs(&["python==3.11", &package]), false)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap().map_err(answer) {
            Ok(_) => won += 1,
            Err(err) => assert_eq!((err.status.as_u16(), err.code), (409, "different_requirements")),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.cluster.names("pods", NS).len(), 1);
}

#[tokio::test]
async fn concurrent_replacements_let_one_win() {
    let s = setup().await;
    s.spawner
        .spawn(&caller("u-1"), &reqs(&["python==3.11"]), false)
        .await
        .unwrap();
    builds_end(&s).await;
    s.cluster.inject(
        Some("PUT"),
        Some("configmaps"),
        Fault::Latency(Duration::from_millis(200)),
        None,
    );
    let tasks: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|package| {
            let spawner = s.spawner.clone();
            tokio::spawn(async move {
                spawner
                    .spawn(&caller("u-1"), &reqs(&["python==3.11", package]), true)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap().map_err(answer) {
            Ok((outcome, view)) => {
                assert_eq!((outcome, view.generation), (Spawned::Replaced, 2));
                won += 1;
            }
            Err(err) => assert_eq!((err.status.as_u16(), err.code), (409, "concurrent_change")),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn a_pod_made_after_its_claim_was_replaced_does_not_outlive_it() {
    let s = setup().await;
    // Both environments are built already (by others), so that neither spawn starts a build.
    for (who, lines) in [("u-8", &["python==3.11"][..]), ("u-9", &["python==3.11", "six"])] {
        s.spawner.spawn(&caller(who), &reqs(lines), false).await.unwrap();
    }
    builds_end(&s).await;
    // The first spawn's pod reaches the API server late: a forced spawn replaces the claim in
    // between, and removes a pod that does not exist yet.
    s.cluster.inject(
        Some("POST"),
        Some("pods"),
        Fault::Latency(Duration::from_millis(800)),
        Some(1),
    );
    let first = {
        let spawner = s.spawner.clone();
        tokio::spawn(async move { spawner.spawn(&caller("u-1"), &reqs(&["python==3.11"]), false).await })
    };
    while s.cluster.names("configmaps", NS).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (outcome, view) = s
        .spawner
        .spawn(&caller("u-1"), &reqs(&["python==3.11", "six"]), true)
        .await
        .unwrap();
    assert_eq!((outcome, view.generation), (Spawned::Replaced, 2));
    let late = first.await.unwrap().map_err(answer).unwrap_err();
    assert_eq!((late.status.as_u16(), late.code), (409, "concurrent_change"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.cluster.names("pods", NS), ["rexec-server-2"]);
}

#[tokio::test]
async fn a_spawn_removes_the_pods_of_older_generations() {
    let s = setup().await;
    let who = caller("u-1");
    let now = reqs(&["python==3.11", "six"]);
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    builds_end(&s).await;
    s.spawner.spawn(&who, &now, true).await.unwrap();
    while s.cluster.names("pods", NS).len() > 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A late spawn's pod of generation 1 that it could not remove.
    s.cluster.put(
        "pods",
        json!({"metadata": {"name": "rexec-server-1", "namespace": NS,
            "labels": {"rexec.ndp.io/generation": "1"}}, "spec": {"containers": []}}),
    );
    let (outcome, view) = s.spawner.spawn(&who, &now, false).await.unwrap();
    assert_eq!((outcome, view.generation), (Spawned::Reused, 2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.cluster.names("pods", NS), ["rexec-server-2"]);
}

#[tokio::test]
async fn cluster_faults_are_503_and_rbac_refusals_500() {
    let s = setup().await;
    let who = caller("u-1");
    for fault in [
        Fault::Status(503),
        Fault::Status(500),
        Fault::Status(429),
        Fault::Drop,
        Fault::Latency(Duration::from_secs(5)),
    ] {
        s.cluster.clear_faults();
        s.cluster.inject(None, Some("namespaces"), fault.clone(), None);
        let err = answer(
            s.spawner
                .spawn(&who, &reqs(&["python==3.11"]), false)
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (err.status.as_u16(), err.code),
            (503, "cluster_unavailable"),
            "{fault:?}"
        );
        assert!(err.retry_after.is_some());
    }
    s.cluster.clear_faults();
    s.cluster.inject(Some("POST"), Some("pods"), Fault::Forbidden, None);
    let err = answer(
        s.spawner
            .spawn(&who, &reqs(&["python==3.11"]), false)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.status.as_u16(), 500);
}

/// What the admission plug-ins answer in a namespace made a moment ago, before the controller
/// manager has made its default service account: the spawn tries the pod again, by what the
/// answer means; a namespace that stays so is 503 with Retry-After, never the RBAC refusal's 500.
#[tokio::test]
async fn a_pod_refused_until_the_namespace_has_its_service_account_is_made_once_it_has() {
    let s = setup().await;
    s.cluster
        .inject(Some("POST"), Some("pods"), Fault::NoServiceAccountYet, Some(3));
    let (outcome, _) = s
        .spawner
        .spawn(&caller("u-1"), &reqs(&["python==3.11"]), false)
        .await
        .unwrap();
    assert_eq!(outcome, Spawned::Created);
    s.cluster.clear_faults();
    s.cluster
        .inject(Some("POST"), Some("pods"), Fault::NoServiceAccountYet, None);
    let err = answer(
        s.spawner
            .spawn(&caller("u-2"), &reqs(&["python==3.11"]), false)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (503, "cluster_unavailable"));
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_namespace_not_ours_is_never_touched() {
    let s = setup().await;
    s.cluster.put(
        "namespaces",
        json!({"metadata": {"name": NS, "labels": {"team": "other"}}, "status": {"phase": "Active"}}),
    );
    let err = answer(
        s.spawner
            .spawn(&caller("u-1"), &reqs(&["python==3.11"]), false)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (409, "namespace_taken"));
    let err = answer(s.spawner.servers().terminate("u-1").await.unwrap_err());
    assert_eq!(err.code, "namespace_taken");
    assert!(
        s.cluster.get("namespaces", "", NS).unwrap()["metadata"]
            .get("deletionTimestamp")
            .is_none()
    );
}

#[tokio::test]
async fn a_namespace_recorded_for_another_owner_is_never_touched() {
    let s = setup().await;
    s.cluster.put(
        "namespaces",
        json!({"metadata": {"name": NS, "labels": {"app.kubernetes.io/managed-by": "rexec-lambda"},
            "annotations": {"rexec.ndp.io/sub": "someone-else"}}, "status": {"phase": "Active"}}),
    );
    let who = caller("u-1");
    let err = answer(
        s.spawner
            .spawn(&who, &reqs(&["python==3.11"]), false)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (409, "namespace_taken"));
    assert_eq!(
        answer(s.spawner.servers().describe(&who.sub).await.unwrap_err()).code,
        "namespace_taken"
    );
    assert_eq!(
        answer(s.spawner.servers().terminate(&who.sub).await.unwrap_err()).code,
        "namespace_taken"
    );
    assert_eq!(
        s.cluster.count("POST", "configmaps") + s.cluster.count("GET", "configmaps"),
        0
    );
    assert!(
        s.cluster.get("namespaces", "", NS).unwrap()["metadata"]
            .get("deletionTimestamp")
            .is_none()
    );
}

#[tokio::test]
async fn every_spawn_brings_the_guard_rails_of_an_older_release_up_to_date() {
    let s = setup().await;
    let who = caller("u-1");
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    // What an older release left: a namespace without Pod Security labels, an open policy, a
    // quota without storage, no LimitRange.
    s.cluster.put(
        "namespaces",
        json!({"metadata": {"name": NS, "labels": {"app.kubernetes.io/managed-by": "rexec-lambda"},
            "annotations": {"rexec.ndp.io/sub": "u-1"}}, "status": {"phase": "Active"}}),
    );
    s.cluster.put(
        "networkpolicies",
        json!({"metadata": {"name": "rexec-egress", "namespace": NS}, "spec": {"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]}]}}),
    );
    s.cluster.put(
        "resourcequotas",
        json!({"metadata": {"name": "rexec-quota", "namespace": NS}, "spec": {"hard": {"pods": "2"}}}),
    );
    let (outcome, _) = s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    assert_eq!(outcome, Spawned::Reused);
    let ns = s.cluster.get("namespaces", "", NS).unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let policy = s.cluster.get("networkpolicies", NS, "rexec-egress").unwrap();
    let except = &policy["spec"]["egress"][2]["to"][0]["ipBlock"]["except"];
    assert!(except.as_array().unwrap().contains(&json!("10.0.0.0/8")), "{policy}");
    let quota = s.cluster.get("resourcequotas", NS, "rexec-quota").unwrap();
    assert_eq!(quota["spec"]["hard"]["limits.ephemeral-storage"], "16Gi");
    assert!(s.cluster.get("limitranges", NS, "rexec-limits").is_some());

    let version = |resource: &str, name: &str| {
        let ns = if resource == "namespaces" { "" } else { NS };
        s.cluster.get(resource, ns, name).unwrap()["metadata"]["resourceVersion"].clone()
    };
    let before = version("networkpolicies", "rexec-egress");
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    assert_eq!(
        version("networkpolicies", "rexec-egress"),
        before,
        "an unchanged object is not rewritten"
    );
}

#[tokio::test]
async fn a_full_quota_is_a_409_not_a_missing_permission() {
    let s = setup().await;
    let who = caller("u-1");
    s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
    builds_end(&s).await;
    s.cluster
        .put("pods", json!({"metadata": {"name": "stray", "namespace": NS}}));
    let err = answer(
        s.spawner
            .spawn(&who, &reqs(&["python==3.11", "six"]), true)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (409, "quota_exceeded"));
    assert!(err.retry_after.is_some());
    // The server replaced is gone and none is being made: get-server says there is none.
    assert!(s.spawner.servers().describe(&who.sub).await.unwrap().is_none());
}

#[tokio::test]
async fn a_spawn_waits_on_few_round_trips() {
    let s = setup().await;
    let python = reqs(&["python==3.11"]);
    // Another caller's spawn builds the environment, so that u-1's finds it built.
    s.spawner.spawn(&caller("u-0"), &python, false).await.unwrap();
    builds_end(&s).await;
    s.cluster
        .inject(None, None, Fault::Latency(Duration::from_millis(40)), None);
    let mut trips = Vec::new();
    for (expected, force) in [
        (Spawned::Created, false),
        (Spawned::Reused, false),
        (Spawned::Replaced, true),
    ] {
        s.cluster.forget_calls();
        let (outcome, _) = s.spawner.spawn(&caller("u-1"), &python, force).await.unwrap();
        assert_eq!(outcome, expected);
        let made = s.cluster.round_trips();
        eprintln!("{outcome:?}: {} requests, {} in sequence", made.calls, made.in_sequence);
        trips.push(made.in_sequence);
    }
    assert!(trips[0] <= 4, "a new server waited on {} round trips", trips[0]);
    assert!(trips[1] <= 2, "a reused server waited on {} round trips", trips[1]);
    assert!(
        trips[2] <= 7,
        "a forced replacement, which builds anew, waited on {} round trips",
        trips[2]
    );
}

/// The Jobs that `slug` started and that have not ended.
fn unfinished_builds_of(s: &Setup, slug: &str) -> usize {
    builds(s)
        .iter()
        .filter(|j| j["metadata"]["labels"]["rexec.ndp.io/owner"] == slug && !ended(j))
        .count()
}

#[tokio::test]
async fn a_caller_starts_one_build_at_a_time_and_loses_nothing() {
    let s = setup().await;
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(60),
        ..Behaviour::default()
    });
    let (alice, bob) = (caller("u-1"), caller("u-2"));
    let first = reqs(&["python==3.11", "numpy"]);
    s.spawner.spawn(&alice, &first, false).await.unwrap();
    let job = &builds(&s)[0];
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 600, "a deadline");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600, "a time to live");
    assert_eq!(job["metadata"]["labels"]["rexec.ndp.io/owner"], "u-1", "who started it");
    let quota = s.cluster.get("resourcequotas", ENVIRONMENTS, "rexec-builds").unwrap();
    assert_eq!(quota["spec"]["hard"]["pods"], "20");

    let err = answer(
        s.spawner
            .spawn(&alice, &reqs(&["python==3.11", "pandas"]), true)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.status.as_u16(), err.code), (429, "build_in_progress"));
    assert!(err.retry_after.is_some_and(|d| d >= Duration::from_secs(5)));
    let view = s.spawner.servers().describe("u-1").await.unwrap().unwrap();
    assert_eq!(
        (view.generation, view.requirements.clone()),
        (1, first.lines()),
        "the server asked for first is kept"
    );
    assert_eq!(builds(&s).len(), 1);

    // Others asking for the environment being built wait on it; their own start a build.
    s.spawner.spawn(&bob, &first, false).await.unwrap();
    assert_eq!(builds(&s).len(), 1, "the same build, shared");
    let (_, view) = s
        .spawner
        .spawn(&caller("u-3"), &reqs(&["python==3.11", "six"]), false)
        .await
        .unwrap();
    assert_eq!(view.generation, 1);
    assert_eq!(builds(&s).len(), 2);
    assert_eq!(unfinished_builds_of(&s, "u-1"), 1);
}

#[tokio::test]
async fn a_burst_of_forced_spawns_leaves_one_unfinished_build_of_its_caller() {
    for held in [true, false] {
        let s = setup().await;
        let who = caller("u-1");
        s.spawner.spawn(&who, &reqs(&["python==3.11"]), false).await.unwrap();
        if held {
            // The first build is held unfinished.
            s.cluster.set_behaviour(Behaviour {
                install_time: Duration::from_secs(60),
                ..Behaviour::default()
            });
        } else {
            builds_end(&s).await;
            s.cluster.set_behaviour(Behaviour {
                install_time: Duration::from_secs(60),
                ..Behaviour::default()
            });
        }
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let spawner = s.spawner.clone();
                let package = format!("pkg{i}");
                tokio::spawn(async move {
                    spawner
                        .spawn(&caller("u-1"), &reqs(&["python==3.11", &package]), true)
                        .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(match task.await.unwrap().map_err(answer) {
                Ok(_) => "replaced",
                Err(err) => err.code,
            });
        }
        assert_eq!(unfinished_builds_of(&s, "u-1"), 1, "held {held}: {answers:?}");
        for code in &answers {
            assert!(
                ["replaced", "build_in_progress", "concurrent_change"].contains(code),
                "{answers:?}"
            );
        }
        if held {
            assert!(answers.iter().all(|a| *a == "build_in_progress"), "{answers:?}");
        }
    }
}

#[tokio::test]
async fn builds_past_the_maximum_are_busy_and_a_refused_first_spawn_leaves_no_server() {
    let s = setup_with(&[("REXEC_SPAWN_WAIT_SECONDS", "0"), ("REXEC_MAX_BUILDS", "2")]).await;
    // Long enough that both builds still run when the third caller comes, on a loaded machine.
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(5),
        ..Behaviour::default()
    });
    for (who, package) in [("u-1", "a"), ("u-2", "b")] {
        s.spawner
            .spawn(&caller(who), &reqs(&["python==3.11", package]), false)
            .await
            .unwrap();
    }
    let quota = s.cluster.get("resourcequotas", ENVIRONMENTS, "rexec-builds").unwrap();
    assert_eq!(quota["spec"]["hard"]["pods"], "2");
    let late = reqs(&["python==3.11", "c"]);
    let err = answer(s.spawner.spawn(&caller("u-3"), &late, false).await.unwrap_err());
    assert_eq!((err.status.as_u16(), err.code), (429, "builds_busy"));
    assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
    assert!(
        s.spawner.servers().describe("u-3").await.unwrap().is_none(),
        "no server half made"
    );
    // A build someone else started is no slot of one's own: it is used.
    s.spawner
        .spawn(&caller("u-4"), &reqs(&["python==3.11", "a"]), false)
        .await
        .unwrap();
    builds_end(&s).await;
    let (outcome, view) = s.spawner.spawn(&caller("u-3"), &late, false).await.unwrap();
    assert_eq!((outcome, view.generation), (Spawned::Created, 2));
}

#[tokio::test]
async fn a_build_whose_job_is_gone_is_used_as_its_record_says() {
    let s = setup().await;
    let python = reqs(&["python==3.11"]);
    s.spawner.spawn(&caller("u-0"), &python, false).await.unwrap();
    builds_end(&s).await;
    let job = builds(&s).remove(0);
    let name = job["metadata"]["name"].as_str().unwrap().to_owned();
    let label = job["metadata"]["labels"]["rexec.ndp.io/environment"]
        .as_str()
        .unwrap()
        .to_owned();
    s.cluster.delete("jobs", ENVIRONMENTS, &name);
    let recorded = |latest: u64, completed: u64, at: &str| {
        json!({"metadata": {"name": format!("env-{label}"), "namespace": ENVIRONMENTS, "annotations": {
            "rexec.ndp.io/latest-build": latest.to_string(),
            "rexec.ndp.io/completed-build": completed.to_string(),
            "rexec.ndp.io/completed-at": at}}})
    };
    s.cluster.put(
        "configmaps",
        recorded(
            4,
            4,
            &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ),
    );
    s.spawner.spawn(&caller("u-1"), &python, false).await.unwrap();
    let pod = s.cluster.get("pods", NS, "rexec-server-1").unwrap();
    assert_eq!(build_of(&pod), "4", "the recorded build");
    assert!(builds(&s).is_empty(), "no build started");
    // A recorded build older than REXEC_ENV_MAX_AGE is built anew, with the next number.
    s.cluster.put("configmaps", recorded(4, 4, "2020-01-01T00:00:00Z"));
    s.spawner.spawn(&caller("u-2"), &python, false).await.unwrap();
    let pod = s.cluster.get("pods", "rexec-u-2", "rexec-server-1").unwrap();
    assert_eq!(build_of(&pod), "5");
}

#[tokio::test]
async fn force_reinstall_builds_the_environment_anew() {
    let s = setup().await;
    let who = caller("u-1");
    let python = reqs(&["python==3.11"]);
    s.spawner.spawn(&who, &python, false).await.unwrap();
    builds_end(&s).await;
    let (_, reused) = s.spawner.spawn(&caller("u-2"), &python, false).await.unwrap();
    let pod = s.cluster.get("pods", "rexec-u-2", &reused.name).unwrap();
    assert_eq!(build_of(&pod), "1", "unforced, the build is shared");
    let (outcome, view) = s.spawner.spawn(&who, &python, true).await.unwrap();
    assert_eq!(outcome, Spawned::Replaced);
    let pod = s.cluster.get("pods", NS, &view.name).unwrap();
    assert_eq!(build_of(&pod), "2", "a fresh resolution");
    assert_eq!(builds(&s).len(), 2);
}
