//! The spawner, get-server, delete-server and the reaper against the real control plane
//! (scripts/cluster), each as its own identity of deploy/k8s/rbac.yaml: the API server's RBAC,
//! admission chain and quotas decide, the Job controller makes the builds' pods, the scheduler
//! binds and kwok moves the pods through their phases (readiness is simulated). One control plane
//! serves the whole scenario.

use std::time::{Duration, Instant, SystemTime};

use rexec_shared::cluster::quantity;
use rexec_shared::config::Vars;
use rexec_shared::server::error::ServerError;
use rexec_shared::server::reaper::{Action, Reaper};
use rexec_shared::server::requirements::RequirementsPolicy;
use rexec_shared::server::spawn_plan::Spawned;
use rexec_shared::server::spawner::{Servers, Spawner, Terminated};
use rexec_shared::server::status::{Phase, Stage};
use rexec_tests::control_plane::ControlPlane;
use rexec_tests::stack::{UNFETCHED_SOURCE_SHA256, UNPULLED_IMAGE_DIGESTS, caller};

fn vars(plane: &ControlPlane, function: &str) -> Vars {
    vars_waiting(plane, function, "25")
}

/// The settings of `function`, as `make dev` gives them (the functions' kubeconfig, whose
/// context named after the function holds its group's token), whose spawns wait `wait` seconds
/// for their server.
fn vars_waiting(plane: &ControlPlane, function: &str, wait: &str) -> Vars {
    vars_with(plane, function, &[("REXEC_SPAWN_WAIT_SECONDS", wait)])
}

/// The settings of `function`, and `more`.
fn vars_with(plane: &ControlPlane, function: &str, more: &[(&str, &str)]) -> Vars {
    let kubeconfig = plane.ready["functions_kubeconfig"].as_str().unwrap();
    Vars::from_pairs(
        [
            ("KUBECONFIG", kubeconfig),
            ("AWS_LAMBDA_FUNCTION_NAME", function),
            ("REXEC_SERVER_SOURCE_SHA256", UNFETCHED_SOURCE_SHA256),
            ("REXEC_SERVER_IMAGE_DIGESTS", UNPULLED_IMAGE_DIGESTS),
        ]
        .into_iter()
        .chain(more.iter().copied()),
    )
}

/// Whether every pod of `namespace` is being deleted (or gone).
fn every_pod_goes(plane: &ControlPlane, namespace: &str) -> bool {
    let pods = plane.get("pods", namespace, "");
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["metadata"]["deletionTimestamp"].is_string())
}

/// Waits until every build's Job has completed.
fn builds_end(plane: &ControlPlane) {
    plane.kubectl(&[
        "wait",
        "--for=condition=complete",
        "jobs",
        "--all",
        "-n",
        "rexec-environments",
        "--timeout=120s",
    ]);
}

#[tokio::test]
async fn a_server_is_spawned_reused_replaced_and_terminated_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let spawner = Spawner::from_vars(&vars(&plane, "spawn-server")).unwrap();
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let who = caller("u-1");
    let python = policy.check(&["python==3.11"]).unwrap();

    let (outcome, view) = spawner.spawn(&who, &python, false).await.unwrap();
    assert_eq!((outcome, view.stage), (Spawned::Created, Stage::Ready), "{view:?}");
    let pod = plane.get("pod", "rexec-u-1", "rexec-server-1");
    assert!(pod["spec"]["nodeName"].as_str().unwrap().starts_with("kwok-node-"));
    // The Job controller made the build's pod, which kwok completes on its own time.
    builds_end(&plane);
    let job = &plane.get("jobs", "rexec-environments", "")["items"][0];
    assert_eq!(
        job["status"]["succeeded"], 1,
        "the build's pod ran to completion: {job}"
    );

    let (outcome, _) = spawner.spawn(&who, &python, false).await.unwrap();
    assert_eq!(outcome, Spawned::Reused);
    let (outcome, view) = spawner.spawn(&who, &python, true).await.unwrap();
    assert_eq!(
        (outcome, view.generation, view.stage),
        (Spawned::Replaced, 2, Stage::Ready)
    );

    let read = Servers::from_vars(&vars(&plane, "get-server")).unwrap();
    let seen = read.describe("u-1").await.unwrap().expect("a server");
    assert_eq!((seen.generation, seen.ready), (2, true));
    let delete = Servers::from_vars(&vars(&plane, "delete-server")).unwrap();
    assert_eq!(delete.terminate("u-1").await.unwrap(), Terminated::Deleted);

    // kwok turns a server ready without waiting for its build: the builds end on their own time.
    builds_end(&plane);
    let reaper = Reaper::from_vars(&vars(&plane, "reap-servers")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = reaper.run(SystemTime::now(), deadline).await.unwrap();
    assert_eq!(report.environments.builds, 2, "{report:?}");
    assert!(
        plane.get("jobs", "rexec-environments", "")["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_burst_of_forced_spawns_by_one_caller_leaves_one_unfinished_build_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let settings = vars_waiting(&plane, "spawn-server", "0");
    let spawner = std::sync::Arc::new(Spawner::from_vars(&settings).unwrap());
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    spawner
        .spawn(&caller("u-1"), &policy.check(&["python==3.11"]).unwrap(), false)
        .await
        .unwrap();
    // The first build is held unfinished.
    let first = plane.get("jobs", "rexec-environments", "")["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    plane.kubectl(&[
        "patch",
        "job",
        &first,
        "-n",
        "rexec-environments",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let spawner = spawner.clone();
            let lines = policy.check(&["python==3.11", &format!("pkg{i}")]).unwrap();
            tokio::spawn(async move { spawner.spawn(&caller("u-1"), &lines, true).await })
        })
        .collect();
    for task in tasks {
        let refused = task.await.unwrap().expect_err("a build of theirs is unfinished");
        assert!(
            matches!(
                refused,
                rexec_shared::server::error::ServerError::BuildInProgress { .. }
            ),
            "{refused:?}"
        );
    }
    let jobs = plane.get("jobs", "rexec-environments", "");
    let theirs: Vec<&serde_json::Value> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["labels"]["rexec.ndp.io/owner"] == "u-1")
        .collect();
    assert_eq!(theirs.len(), 1, "one build of theirs");
    assert_eq!(theirs[0]["spec"]["activeDeadlineSeconds"], 600);
    assert_eq!(theirs[0]["spec"]["ttlSecondsAfterFinished"], 3600);
    // The builds' quota, counted by the quota controller: the API server refuses what exceeds it.
    let quota = plane.get("resourcequota", "rexec-environments", "rexec-builds");
    assert_eq!(quota["spec"]["hard"]["pods"], "20");
    assert_eq!(quota["status"]["hard"]["pods"], "20", "{quota}");
}

/// Failures a kubelet reports, which Stages of ours make kwok report for the images that ask for
/// them (controlplane/stages/): get-server tells each as a failure a person can act on, a failed
/// build with the installer's last line.
#[tokio::test]
async fn failures_a_kubelet_reports_reach_get_server_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let python = policy.check(&["python==3.11"]).unwrap();
    let cases = [
        ("image-pull", "cannot be pulled (ErrImagePull)"),
        ("crash-loop", "keeps crashing (exit code 1) (CrashLoopBackOff)"),
        ("oom", "ran out of memory (OOMKilled)"),
        ("build-fails", "cannot be built (exit code 1)"),
    ];
    for (kind, _) in cases {
        let image = format!("python:{{python}}-slim-kwok-{kind}");
        let settings = vars_with(
            &plane,
            "spawn-server",
            &[("REXEC_SPAWN_WAIT_SECONDS", "0"), ("REXEC_SERVER_IMAGE", &image)],
        );
        let spawner = Spawner::from_vars(&settings).unwrap();
        spawner
            .spawn(&caller(&format!("f-{kind}")), &python, false)
            .await
            .unwrap();
    }
    let read = Servers::from_vars(&vars(&plane, "get-server")).unwrap();
    for (kind, expected) in cases {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let view = read.describe(&format!("f-{kind}")).await.unwrap().expect("a server");
            if view.stage == Stage::Failed {
                let reason = view.reason.clone().unwrap_or_default();
                assert!(reason.contains(expected), "{kind}: {view:?}");
                if kind == "build-fails" {
                    assert!(
                        reason.contains("No matching distribution found for nosuchpkg-rexec"),
                        "{reason}"
                    );
                }
                break;
            }
            assert!(Instant::now() < deadline, "{kind} never failed: {view:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The administrators' list, as the list function's identity: every caller's server, in pages
/// whose `continue` token is the API server's own, filtered by phase; a token the API server
/// refuses is the caller's mistake.
#[tokio::test]
async fn every_server_is_listed_in_pages_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let spawner = Spawner::from_vars(&vars_waiting(&plane, "spawn-server", "0")).unwrap();
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let python = policy.check(&["python==3.11"]).unwrap();
    let owners: Vec<String> = (1..=5).map(|i| format!("l-{i}")).collect();
    for owner in &owners {
        spawner.spawn(&caller(owner), &python, false).await.unwrap();
    }
    let list = Servers::from_vars(&vars(&plane, "list-servers")).unwrap();
    let (mut seen, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = list.list(None, 2, token.as_deref()).await.unwrap();
        assert!(page.servers.len() <= 2);
        pages += 1;
        seen.extend(page.servers.into_iter().filter_map(|s| s.username));
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!((seen, pages), (owners.clone(), 3));
    let deadline = Instant::now() + Duration::from_secs(90);
    while list.list(Some(Phase::Ready), 10, None).await.unwrap().servers.len() < owners.len() {
        assert!(Instant::now() < deadline, "the servers never turned ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        list.list(Some(Phase::Failed), 10, None)
            .await
            .unwrap()
            .servers
            .is_empty()
    );
    assert!(matches!(
        list.list(None, 2, Some("bm90LWEtdG9rZW4")).await,
        Err(ServerError::BadContinue)
    ));
}

/// The reaper, as its own identity, on a server that keeps crashing (kwok reports the crash loop
/// as a kubelet would, controlplane/stages/) beside a ready one: the failure is recorded and the
/// crashing pod removed; the ready server is left alone.
#[tokio::test]
async fn the_reaper_records_a_crashing_server_and_leaves_a_ready_one_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let python = policy.check(&["python==3.11"]).unwrap();
    let crashing = vars_with(
        &plane,
        "spawn-server",
        &[
            ("REXEC_SPAWN_WAIT_SECONDS", "0"),
            ("REXEC_SERVER_IMAGE", "python:{python}-slim-kwok-crash-loop"),
        ],
    );
    Spawner::from_vars(&crashing)
        .unwrap()
        .spawn(&caller("r-crash"), &python, false)
        .await
        .unwrap();
    let (_, ready) = Spawner::from_vars(&vars(&plane, "spawn-server"))
        .unwrap()
        .spawn(&caller("r-ready"), &python, false)
        .await
        .unwrap();
    assert_eq!(ready.stage, Stage::Ready, "{ready:?}");
    let read = Servers::from_vars(&vars(&plane, "get-server")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while read.describe("r-crash").await.unwrap().expect("a server").stage != Stage::Failed {
        assert!(Instant::now() < deadline, "the crash loop was never seen");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reaper = Reaper::from_vars(&vars(&plane, "reap-servers")).unwrap();
    let report = reaper
        .run(SystemTime::now(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.done.get(&Action::RecordFailure), Some(&1), "{report:?}");
    assert_eq!(report.done.len(), 1, "nothing else done: {report:?}");
    assert!(every_pod_goes(&plane, "rexec-r-crash"), "the crashing pod is removed");
    let kept = read.describe("r-ready").await.unwrap().expect("a server");
    assert_eq!((kept.stage, kept.generation), (Stage::Ready, 1));
}

/// The reaper lists every server in pages of the API server's own `continue` tokens: five
/// servers, two a page, all seen.
#[tokio::test]
async fn the_reaper_sees_every_server_page_by_page_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let spawner = Spawner::from_vars(&vars_waiting(&plane, "spawn-server", "0")).unwrap();
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let python = policy.check(&["python==3.11"]).unwrap();
    for i in 1..=5 {
        spawner.spawn(&caller(&format!("p-{i}")), &python, false).await.unwrap();
    }
    let paged = |page: &str| {
        Reaper::from_vars(&vars_with(
            &plane,
            "reap-servers",
            &[("REXEC_REAPER_PAGE_SIZE", page), ("REXEC_REAPER_DRY_RUN", "true")],
        ))
        .unwrap()
    };
    for page in ["2", "500"] {
        let report = paged(page)
            .run(SystemTime::now(), Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(report.servers, 5, "pages of {page}: {report:?}");
    }
}

/// The reaper's idle rule on metrics as a cluster serves them: kwok reports what each pod uses
/// through its node as a kubelet does (controlplane/metrics/usage.yaml: 1m of CPU unless the pod
/// says otherwise), metrics-server serves it as metrics.k8s.io, and the reaper, as its own
/// identity, marks the idle server, leaves the busy one, and removes the idle one once it has
/// been idle longer than `REXEC_SERVER_IDLE_TIMEOUT`.
#[tokio::test]
async fn the_reaper_finds_an_idle_server_by_its_metrics_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let python = policy.check(&["python==3.11"]).unwrap();
    let spawner = Spawner::from_vars(&vars(&plane, "spawn-server")).unwrap();
    for sub in ["m-idle", "m-busy"] {
        let (_, view) = spawner.spawn(&caller(sub), &python, false).await.unwrap();
        assert_eq!(view.stage, Stage::Ready, "{view:?}");
    }
    // The busy server's code runs: half a CPU, as kwok reports it.
    plane.kubectl(&[
        "annotate",
        "pod",
        "rexec-server-1",
        "-n",
        "rexec-m-busy",
        "kwok.x-k8s.io/usage-cpu=500m",
    ]);
    let millicores = |namespace: &str| -> Option<f64> {
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods");
        let list: serde_json::Value = serde_json::from_str(&plane.kubectl(&["get", "--raw", &path])).unwrap();
        quantity::millicores(list["items"][0]["containers"][0]["usage"]["cpu"].as_str()?)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(millicores("rexec-m-busy").is_some_and(|m| m > 400.0) && millicores("rexec-m-idle").is_some()) {
        assert!(
            Instant::now() < deadline,
            "metrics-server never served both pods' metrics"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let reaper = Reaper::from_vars(&vars_with(
        &plane,
        "reap-servers",
        &[("REXEC_SERVER_IDLE_TIMEOUT", "3600"), ("REXEC_SERVER_IDLE_CPU", "50m")],
    ))
    .unwrap();
    let now = SystemTime::now();
    let report = reaper.run(now, Instant::now() + Duration::from_secs(60)).await.unwrap();
    assert!(report.metrics_api, "{report:?}");
    assert_eq!(report.done.get(&Action::MarkIdle), Some(&1), "{report:?}");
    assert_eq!(report.done.len(), 1, "nothing else done: {report:?}");
    let idle_since = |namespace: &str| {
        plane.get("configmap", namespace, "rexec-server")["metadata"]["annotations"]
            .get(rexec_shared::server::claim::IDLE_SINCE)
            .is_some()
    };
    assert!(idle_since("rexec-m-idle") && !idle_since("rexec-m-busy"));

    let later = now + Duration::from_secs(2 * 3600);
    let report = reaper
        .run(later, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.done.get(&Action::RemoveIdle), Some(&1), "{report:?}");
    assert!(every_pod_goes(&plane, "rexec-m-idle"), "the idle server is removed");
    let read = Servers::from_vars(&vars(&plane, "get-server")).unwrap();
    let kept = read.describe("m-busy").await.unwrap().expect("a server");
    assert_eq!((kept.stage, kept.generation), (Stage::Ready, 1));
}

/// A caller's namespace whose quota of pods is taken (a pod of someone else's making beside the
/// server, as the API server's ResourceQuota admission counts it): a replacement is refused by
/// the quota, and the caller told so with 409 `quota_exceeded`, not a missing permission. The
/// old server is gone and no new one is being made, which get-server says; once there is room,
/// the next spawn starts one.
#[tokio::test]
async fn a_full_quota_is_a_409_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let spawner = Spawner::from_vars(&vars(&plane, "spawn-server")).unwrap();
    let who = caller("q-1");
    let (_, first) = spawner
        .spawn(&who, &policy.check(&["python==3.11"]).unwrap(), false)
        .await
        .unwrap();
    assert_eq!(first.stage, Stage::Ready, "{first:?}");
    // The caller's first build ends (one build at a time is started for a caller).
    builds_end(&plane);
    // A pod Pod Security `restricted` admits, its resources from the namespace's LimitRange.
    let stray = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "rexec-q-1"},
        "spec": {"containers": [{"name": "c", "image": "python:3.11-slim", "securityContext": {
            "runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}]},
    });
    let path = std::env::temp_dir().join(format!("rexec-stray-{}.json", std::process::id()));
    std::fs::write(&path, stray.to_string()).unwrap();
    plane.kubectl(&["create", "-f", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();

    let err = spawner
        .spawn(&who, &policy.check(&["python==3.11", "six"]).unwrap(), true)
        .await
        .unwrap_err();
    let answer: rexec_shared::http::error::ApiError = err.into();
    assert_eq!(
        (answer.status.as_u16(), answer.code),
        (409, "quota_exceeded"),
        "{answer:?}"
    );
    assert!(answer.retry_after.is_some());
    let read = Servers::from_vars(&vars(&plane, "get-server")).unwrap();
    assert!(
        read.describe("q-1").await.unwrap().is_none(),
        "no server, none being made"
    );

    plane.kubectl(&["delete", "pod", "stray", "-n", "rexec-q-1", "--wait"]);
    let (spawned, view) = spawner
        .spawn(&who, &policy.check(&["python==3.11", "six"]).unwrap(), false)
        .await
        .unwrap();
    assert_eq!((spawned, view.stage), (Spawned::Created, Stage::Ready), "{view:?}");
}
