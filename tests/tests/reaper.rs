//! The reaper against the Kubernetes stand-in, with the clock in the test's hands: each run is
//! given the time it runs at.

use std::time::{Duration, Instant, SystemTime};

use rexec_shared::config::Vars;
use rexec_shared::server::claim;
use rexec_shared::server::reaper::{Action, Reaper, Report};
use rexec_shared::server::requirements::{Requirements, RequirementsPolicy};
use rexec_shared::server::spawn_plan::Spawned;
use rexec_shared::server::spawner::{Spawner, Terminated};
use rexec_shared::server::status::Stage;
use rexec_stand_ins::kube::{Behaviour, Fault, KubeStandIn, KubeconfigFile};
use rexec_tests::logs::CapturedLogs;
use rexec_tests::stack::{UNFETCHED_SOURCE_SHA256, UNPULLED_IMAGE_DIGESTS, caller};
use serde_json::{Value, json};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

struct Setup {
    cluster: KubeStandIn,
    kubeconfig: KubeconfigFile,
}

impl Setup {
    async fn start() -> Self {
        let cluster = KubeStandIn::start().await;
        let kubeconfig = cluster.write_kubeconfig("t");
        Self { cluster, kubeconfig }
    }

    /// Servers created from now on build for `build`, then are ready at once.
    fn servers_take(&self, build: Duration) {
        self.cluster.set_behaviour(Behaviour {
            install_time: build,
            start_time: Duration::ZERO,
            ..Behaviour::default()
        });
    }

    fn vars(&self, extra: &[(&str, &str)]) -> Vars {
        let mut pairs = vec![
            ("KUBECONFIG", self.kubeconfig.to_str().unwrap()),
            ("KUBE_TIMEOUT_SECONDS", "5"),
            ("REXEC_SERVER_SOURCE_SHA256", UNFETCHED_SOURCE_SHA256),
            ("REXEC_SERVER_IMAGE_DIGESTS", UNPULLED_IMAGE_DIGESTS),
        ];
        pairs.extend_from_slice(extra);
        Vars::from_pairs(pairs)
    }

    /// A spawner that answers once the server is ready, or at once with `wait` "0".
    fn spawner(&self, wait: &str) -> Spawner {
        Spawner::from_vars(&self.vars(&[("REXEC_SPAWN_WAIT_SECONDS", wait)])).unwrap()
    }

    fn reaper(&self, extra: &[(&str, &str)]) -> Reaper {
        Reaper::from_vars(&self.vars(extra)).unwrap()
    }

    fn claim(&self, sub: &str) -> Option<Value> {
        self.cluster.get("configmaps", &format!("rexec-{sub}"), claim::NAME)
    }

    fn annotation(&self, sub: &str, key: &str) -> Option<String> {
        self.claim(sub)?["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_owned)
    }

    /// Whether the server's pod of generation 1 is gone or going.
    fn pod_removed(&self, sub: &str) -> bool {
        self.cluster
            .get("pods", &format!("rexec-{sub}"), "rexec-server-1")
            .is_none_or(|p| p["metadata"].get("deletionTimestamp").is_some())
    }
}

fn reqs() -> Requirements {
    reqs_of(&["python==3.11"])
}

fn reqs_of(lines: &[&str]) -> Requirements {
    RequirementsPolicy::from_vars(&Vars::default())
        .unwrap()
        .check(lines)
        .unwrap()
}

/// One run at `at`, with a minute to act.
async fn run(reaper: &Reaper, at: SystemTime) -> Report {
    reaper.run(at, Instant::now() + Duration::from_secs(60)).await.unwrap()
}

fn done(report: &Report, action: Action) -> usize {
    report.done.get(&action).copied().unwrap_or_default()
}

#[tokio::test]
async fn a_server_not_ready_in_time_is_failed_and_removed_with_no_spawn_needed() {
    let s = Setup::start().await;
    s.servers_take(Duration::from_secs(600));
    let spawner = s.spawner("0");
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    let reaper = s.reaper(&[]);
    let now = SystemTime::now();
    assert!(run(&reaper, now).await.done.is_empty(), "building, within its time");

    let report = run(&reaper, now + Duration::from_secs(301)).await;
    assert_eq!((report.servers, done(&report, Action::RecordFailure)), (1, 1));
    assert!(s.pod_removed("u-1"), "the pod goes, freeing the quota");
    let failure = s.annotation("u-1", claim::FAILURE).unwrap();
    assert!(
        failure.contains("not ready within 300 s (REXEC_START_TIMEOUT)"),
        "{failure}"
    );
    assert!(s.annotation("u-1", claim::FAILED_AT).is_some());
    let view = spawner.servers().describe("u-1").await.unwrap().unwrap();
    assert_eq!((view.stage, view.reason), (Stage::Failed, Some(failure)));

    // Recorded once: the next run leaves it for people to read, until the retention ends.
    let later = now + Duration::from_secs(400);
    assert!(run(&reaper, later).await.done.is_empty());
    let report = run(&reaper, later + DAY + HOUR).await;
    assert_eq!(done(&report, Action::RemoveFailed), 1);
    assert!(s.annotation("u-1", claim::TERMINATED).is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(spawner.servers().describe("u-1").await.unwrap().is_none());
}

#[tokio::test]
async fn idle_servers_are_marked_then_removed_and_busy_ones_stay() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    s.cluster.install_metrics();
    let spawner = s.spawner("20");
    for sub in ["u-1", "u-2"] {
        let (_, view) = spawner.spawn(&caller(sub), &reqs(), false).await.unwrap();
        assert_eq!(view.stage, Stage::Ready);
    }
    s.cluster.set_cpu_usage("rexec-u-1", "rexec-server-1", "1500000n");
    s.cluster.set_cpu_usage("rexec-u-2", "rexec-server-1", "350m");
    let reaper = s.reaper(&[]);
    let now = SystemTime::now();

    let report = run(&reaper, now).await;
    assert!(report.metrics_api);
    assert_eq!(done(&report, Action::MarkIdle), 1);
    assert!(s.annotation("u-1", claim::IDLE_SINCE).is_some());
    assert!(s.annotation("u-2", claim::IDLE_SINCE).is_none(), "busy");

    assert!(
        run(&reaper, now + HOUR).await.done.is_empty(),
        "idle, not for long enough"
    );
    let report = run(&reaper, now + 5 * HOUR).await;
    assert_eq!(done(&report, Action::RemoveIdle), 1);
    assert!(s.annotation("u-1", claim::TERMINATED).is_some() && s.pod_removed("u-1"));
    assert!(s.annotation("u-2", claim::TERMINATED).is_none() && !s.pod_removed("u-2"));

    // Idle for a while, then busy again: the mark goes, and the clock starts over.
    s.cluster.set_cpu_usage("rexec-u-2", "rexec-server-1", "0");
    assert_eq!(done(&run(&reaper, now).await, Action::MarkIdle), 1);
    s.cluster.set_cpu_usage("rexec-u-2", "rexec-server-1", "2");
    assert_eq!(done(&run(&reaper, now + 5 * HOUR).await, Action::MarkBusy), 1);
    assert!(s.annotation("u-2", claim::IDLE_SINCE).is_none());
    assert!(!s.pod_removed("u-2"));
}

#[tokio::test(flavor = "current_thread")]
async fn without_the_metrics_api_no_server_is_idle_and_the_run_says_so() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    s.spawner("20").spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    let reaper = s.reaper(&[]);
    let (logs, _guard) = CapturedLogs::start();
    let report = run(&reaper, SystemTime::now() + DAY).await;
    assert!(!report.metrics_api && report.done.is_empty());
    assert!(
        logs.text()
            .contains("the metrics API (metrics.k8s.io) is not installed")
    );
    assert!(!s.pod_removed("u-1"));
}

#[tokio::test]
async fn servers_older_than_the_maximum_age_expire() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    s.spawner("20").spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    let reaper = s.reaper(&[("REXEC_SERVER_MAX_AGE", "3600")]);
    assert!(run(&reaper, SystemTime::now()).await.done.is_empty());
    let report = run(&reaper, SystemTime::now() + 2 * HOUR).await;
    assert_eq!(done(&report, Action::Expire), 1);
    assert!(s.annotation("u-1", claim::TERMINATED).is_some() && s.pod_removed("u-1"));
}

#[tokio::test(flavor = "current_thread")]
async fn namespaces_left_without_a_server_go_after_the_retention_and_no_other() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    let spawner = s.spawner("20");
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    spawner.spawn(&caller("u-2"), &reqs(), false).await.unwrap();
    assert_eq!(spawner.servers().terminate("u-1").await.unwrap(), Terminated::Deleted);
    // A namespace of ours with no claim (a first spawn that stopped half-way), and one not ours.
    s.cluster.put(
        "namespaces",
        json!({"metadata": {"name": "rexec-u-3", "labels": {"app.kubernetes.io/managed-by": "rexec-lambda", "rexec.ndp.io/owner": "u-3"},
            "annotations": {"rexec.ndp.io/sub": "u-3"}}, "status": {"phase": "Active"}}),
    );
    s.cluster.put(
        "namespaces",
        json!({"metadata": {"name": "team-a"}, "status": {"phase": "Active"}}),
    );
    let reaper = s.reaper(&[]);
    assert!(run(&reaper, SystemTime::now() + DAY).await.done.is_empty());

    let (logs, _guard) = CapturedLogs::start();
    let report = run(&reaper, SystemTime::now() + 8 * DAY).await;
    assert_eq!(done(&report, Action::RemoveNamespace), 2, "{report:?}");
    let terminating = |name: &str| {
        s.cluster
            .get("namespaces", "", name)
            .is_none_or(|ns| ns["status"]["phase"] == "Terminating")
    };
    assert!(terminating("rexec-u-1") && terminating("rexec-u-3"));
    assert!(s.claim("u-1").is_none(), "the claim first");
    for kept in ["rexec-u-2", "team-a", "rexec-environments"] {
        assert!(!terminating(kept), "{kept}");
    }
    // Each removal is an entry of the audit trail: what, by whom, whose, where, why, and what
    // came of it.
    let entries: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "audit" && l["event"] == "reap")
        .collect();
    assert_eq!(entries.len(), 2);
    let u1 = entries.iter().find(|l| l["target"] == "rexec-u-1").unwrap();
    assert_eq!(
        (&u1["action"], &u1["actor"], &u1["owner"], &u1["outcome"]),
        (
            &json!("remove_namespace"),
            &json!("reaper"),
            &json!("u-1"),
            &json!("done")
        )
    );
    assert!(u1["reason"].as_str().unwrap().contains("REXEC_NAMESPACE_RETENTION"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_namespace_whose_caller_spawned_meanwhile_is_kept() {
    let s = Setup::start().await;
    let spawner = s.spawner("0");
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    spawner.servers().terminate("u-1").await.unwrap();
    // The caller spawns again between the reaper's list and its deletion of the claim.
    s.cluster.inject(
        Some("DELETE"),
        Some("configmaps"),
        Fault::Latency(Duration::from_secs(1)),
        Some(1),
    );
    let (logs, _guard) = CapturedLogs::start();
    let reaper = s.reaper(&[]);
    let (report, spawned) = tokio::join!(run(&reaper, SystemTime::now() + 8 * DAY), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap()
    });
    assert_eq!(spawned.1.generation, 2);
    assert_eq!((report.left, report.done.len()), (1, 0));
    let decision = logs
        .lines()
        .into_iter()
        .find(|l| l["message"] == "audit" && l["event"] == "reap")
        .unwrap();
    assert_eq!(decision["outcome"], "left: the claim changed meanwhile");
    assert!(s.claim("u-1").is_some());
    let namespace = s.cluster.get("namespaces", "", "rexec-u-1").unwrap();
    assert_eq!(namespace["status"]["phase"], "Active");
}

#[tokio::test]
async fn a_caller_who_spawns_between_the_claims_deletion_and_the_namespaces_keeps_it() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    let spawner = s.spawner("5");
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    spawner.servers().terminate("u-1").await.unwrap();
    while s.cluster.get("pods", "rexec-u-1", "rexec-server-1").is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The claim is deleted; the namespace's deletion reaches the API server late.
    s.cluster.inject(
        Some("DELETE"),
        Some("namespaces"),
        Fault::Latency(Duration::from_secs(1)),
        Some(1),
    );
    let reaper = s.reaper(&[]);
    let (report, spawned) = tokio::join!(run(&reaper, SystemTime::now() + 8 * DAY), async {
        while s.claim("u-1").is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap()
    });
    assert_eq!(spawned.0, Spawned::Created);
    assert_eq!((report.left, report.done.len()), (1, 0), "{report:?}");
    let namespace = s.cluster.get("namespaces", "", "rexec-u-1").unwrap();
    assert_eq!(namespace["status"]["phase"], "Active");
    let view = spawner.servers().describe("u-1").await.unwrap().unwrap();
    assert!(view.ready, "the new server runs: {view:?}");
}

#[tokio::test]
async fn a_dry_run_and_a_run_out_of_time_change_nothing() {
    let s = Setup::start().await;
    s.servers_take(Duration::from_secs(600));
    s.spawner("0").spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    let late = SystemTime::now() + HOUR;

    let report = run(&s.reaper(&[("REXEC_REAPER_DRY_RUN", "true")]), late).await;
    assert!(report.dry_run);
    assert_eq!(done(&report, Action::RecordFailure), 1, "decided and logged");
    let out_of_time = s.reaper(&[]).run(late, Instant::now()).await.unwrap();
    assert_eq!((out_of_time.left, out_of_time.done.len()), (1, 0));
    assert!(s.annotation("u-1", claim::FAILURE).is_none() && !s.pod_removed("u-1"));
}

#[tokio::test]
async fn ten_thousand_servers_are_listed_page_by_page() {
    let s = Setup::start().await;
    const SERVERS: usize = 10_000;
    let long_ago = humantime::format_rfc3339_seconds(SystemTime::now() - 3 * DAY).to_string();
    for i in 0..SERVERS {
        let ns = format!("rexec-u-{i}");
        let owner = json!({"app.kubernetes.io/managed-by": "rexec-lambda", "rexec.ndp.io/owner": format!("u-{i}")});
        s.cluster.put(
            "namespaces",
            json!({"metadata": {"name": ns, "labels": owner, "annotations": {"rexec.ndp.io/sub": format!("u-{i}")}}, "status": {"phase": "Active"}}),
        );
        let mut annotations =
            json!({claim::DIGEST: "d", claim::GENERATION: "1", claim::PYTHON: "3.11", claim::REQUIREMENTS: "[]"});
        if i % 2500 == 7 {
            annotations[claim::FAILURE] = json!("The environment cannot be built");
            annotations[claim::FAILED_AT] = json!(long_ago);
        }
        s.cluster.put(
            "configmaps",
            json!({"metadata": {"name": claim::NAME, "namespace": ns, "labels": owner, "annotations": annotations}}),
        );
        s.cluster.put(
            "pods",
            json!({"metadata": {"name": "rexec-server-1", "namespace": ns, "labels": {"app.kubernetes.io/name": "rexec-server"}},
                "spec": {"containers": [{"name": "server"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
    }
    let started = Instant::now();
    let report = s
        .reaper(&[])
        .run(SystemTime::now(), Instant::now() + Duration::from_secs(600))
        .await
        .unwrap();
    println!("a run over {SERVERS} servers: {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(
        (report.servers, done(&report, Action::RemoveFailed), report.left),
        (SERVERS, 4, 0)
    );
    // Paged: one list of everything would be one request each.
    for resource in ["configmaps", "pods", "namespaces"] {
        assert!(
            s.cluster.count("GET", resource) >= SERVERS / 500,
            "{resource}: 500 a page"
        );
    }
}

#[tokio::test]
async fn the_scheduled_function_runs_the_reaper_within_its_invocations_time() {
    let s = Setup::start().await;
    s.servers_take(Duration::from_secs(600));
    s.spawner("0").spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    let deps = reap_servers::Deps::from_vars(&s.vars(&[("REXEC_START_TIMEOUT", "1")])).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let scheduled: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/reap-servers.json")).unwrap(),
    )
    .unwrap();
    let invoke = |deadline_in: Duration| {
        let mut context = lambda_http::Context::default();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
        context.deadline = (now + deadline_in).as_millis() as u64;
        lambda_http::LambdaEvent::new(scheduled.clone(), context)
    };
    // Less time left than the margin kept for the report: nothing is started.
    let hurried = reap_servers::handler(&deps, invoke(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!((hurried.left, hurried.done.len()), (1, 0));
    let report = reap_servers::handler(&deps, invoke(Duration::from_secs(300)))
        .await
        .unwrap();
    assert_eq!(done(&report, Action::RecordFailure), 1);
    assert!(s.pod_removed("u-1"));
}

#[tokio::test]
async fn finished_builds_are_recorded_and_removed_and_their_environment_stays_in_use() {
    let s = Setup::start().await;
    s.servers_take(Duration::from_millis(300));
    let spawner = s.spawner("10");
    let six = reqs_of(&["python==3.11", "six"]);
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    s.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(600),
        ..Behaviour::default()
    });
    spawner.spawn(&caller("u-2"), &six, false).await.unwrap();
    let jobs = || s.cluster.names("jobs", "rexec-environments");
    assert_eq!(jobs().len(), 2);

    let dry = run(&s.reaper(&[("REXEC_REAPER_DRY_RUN", "true")]), SystemTime::now()).await;
    assert_eq!(
        (dry.environments.builds, jobs().len()),
        (1, 2),
        "a dry run changes nothing"
    );
    let report = run(&s.reaper(&[]), SystemTime::now()).await;
    assert_eq!(
        report.environments.builds, 1,
        "the finished build; the running one stays"
    );
    let left = jobs();
    assert_eq!(left.len(), 1);
    let files = s.cluster.names("configmaps", "rexec-environments");
    assert!(files.contains(&left[0]), "the running build keeps its files");
    let records: Vec<Value> = files
        .iter()
        .filter(|name| !left.contains(name))
        .map(|name| s.cluster.get("configmaps", "rexec-environments", name).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        1,
        "one record, the finished build's files gone: {files:?}"
    );
    let annotations = &records[0]["metadata"]["annotations"];
    assert_eq!(
        (
            &annotations["rexec.ndp.io/latest-build"],
            &annotations["rexec.ndp.io/completed-build"]
        ),
        (&json!("1"), &json!("1"))
    );
    // With its Job gone, the build is still used.
    spawner.spawn(&caller("u-3"), &reqs(), false).await.unwrap();
    let pod = s.cluster.get("pods", "rexec-u-3", "rexec-server-1").unwrap();
    assert_eq!(pod["metadata"]["labels"]["rexec.ndp.io/build"], "1");
    assert_eq!(jobs().len(), 1, "no build started");
}

#[tokio::test]
async fn an_environment_no_server_used_for_the_retention_is_cleaned_then_forgotten() {
    let s = Setup::start().await;
    s.servers_take(Duration::from_millis(200));
    let spawner = s.spawner("10");
    let six = reqs_of(&["python==3.11", "six"]);
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    spawner.spawn(&caller("u-2"), &six, false).await.unwrap();
    let reaper = s.reaper(&[("REXEC_SERVER_IDLE_TIMEOUT", "0")]);
    let now = SystemTime::now();
    run(&reaper, now).await;
    // u-1's server goes; u-2's stays, and keeps its environment in use.
    assert_eq!(spawner.servers().terminate("u-1").await.unwrap(), Terminated::Deleted);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs = |label: &str| {
        s.cluster
            .names("jobs", "rexec-environments")
            .into_iter()
            .filter(|n| n.starts_with(label))
            .collect::<Vec<_>>()
    };
    let record = |name: &str| s.cluster.get("configmaps", "rexec-environments", name);
    let records: Vec<String> = s
        .cluster
        .names("configmaps", "rexec-environments")
        .into_iter()
        .filter(|n| n.starts_with("env-"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");

    let week = 7 * DAY;
    let report = run(&reaper, now + week - HOUR).await;
    assert_eq!(report.environments.cleanups, 0, "within the retention");
    let report = run(&reaper, now + week + HOUR).await;
    assert_eq!(report.environments.cleanups, 1, "the unused one only");
    let cleanups = jobs("clean-");
    assert_eq!(cleanups.len(), 1);
    let cleanup = s.cluster.get("jobs", "rexec-environments", &cleanups[0]).unwrap();
    let label = cleanup["metadata"]["labels"]["rexec.ndp.io/cleans"]
        .as_str()
        .unwrap()
        .to_owned();
    let cleaned = record(&format!("env-{label}")).unwrap();
    assert_eq!(cleaned["metadata"]["annotations"]["rexec.ndp.io/cleaning"], "1");
    let container = &cleanup["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["/opt/rexec/environment/1"]));
    assert_eq!(
        container["volumeMounts"][0]["subPath"],
        cleaned["metadata"]["annotations"]["rexec.ndp.io/environment"]
    );
    let kept = records.iter().find(|r| **r != format!("env-{label}")).unwrap();
    assert!(
        record(kept).unwrap()["metadata"]["annotations"]["rexec.ndp.io/used-at"].is_string(),
        "marked in use"
    );

    // A spawn while it is cleaned builds anew, with the next number.
    let (_, view) = spawner.spawn(&caller("u-3"), &reqs(), false).await.unwrap();
    let pod = s.cluster.get("pods", "rexec-u-3", &view.name).unwrap();
    assert_eq!(pod["metadata"]["labels"]["rexec.ndp.io/build"], "2");
    // The cleanup ended, a build came since: the mark goes and the record stays.
    let report = run(&reaper, now + week + 2 * HOUR).await;
    assert_eq!(report.environments.forgotten, 0);
    let after = record(&format!("env-{label}")).unwrap();
    assert!(after["metadata"]["annotations"].get("rexec.ndp.io/cleaning").is_none());
    assert!(jobs("clean-").is_empty(), "the cleanup's Job removed");

    // Unused again past the retention: cleaned through 2, then forgotten.
    assert_eq!(spawner.servers().terminate("u-3").await.unwrap(), Terminated::Deleted);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = run(&reaper, now + 3 * week).await;
    assert_eq!(report.environments.cleanups, 1);
    let cleanup = s
        .cluster
        .get("jobs", "rexec-environments", &format!("clean-{label}"))
        .unwrap();
    assert_eq!(
        cleanup["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["/opt/rexec/environment/1", "/opt/rexec/environment/2"])
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = run(&reaper, now + 3 * week + HOUR).await;
    assert_eq!(report.environments.forgotten, 1);
    assert!(record(&format!("env-{label}")).is_none(), "forgotten");
    assert!(jobs("clean-").is_empty());
    // The next build of it is number 1 again, in a directory the cleanup emptied.
    let (_, view) = spawner.spawn(&caller("u-4"), &reqs(), false).await.unwrap();
    let pod = s.cluster.get("pods", "rexec-u-4", &view.name).unwrap();
    assert_eq!(pod["metadata"]["labels"]["rexec.ndp.io/build"], "1");
}

impl Setup {
    /// The server of `sub` loses its readiness, as when its broker connection drops: its
    /// server started twenty minutes ago and has not been ready for the last ten.
    fn lose_readiness(&self, sub: &str) {
        let namespace = format!("rexec-{sub}");
        let mut pod = self.cluster.get("pods", &namespace, "rexec-server-1").unwrap();
        let at = |minutes: u64| {
            humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(minutes * 60)).to_string()
        };
        pod["metadata"]["creationTimestamp"] = json!(at(30));
        pod["status"] = json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": at(10)}],
            "containerStatuses": [{"name": "server", "ready": false, "restartCount": 0, "image": "python",
                                   "imageID": "", "state": {"running": {"startedAt": at(20)}}}],
        });
        self.cluster.put("pods", pod);
    }
}

#[tokio::test]
async fn servers_that_lose_their_readiness_together_are_kept_and_one_alone_is_not() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    let spawner = s.spawner("5");
    let subs: Vec<String> = (0..8).map(|i| format!("u-{i}")).collect();
    for sub in &subs {
        spawner.spawn(&caller(sub), &reqs(), false).await.unwrap();
    }
    let reaper = s.reaper(&[("REXEC_SERVER_IDLE_TIMEOUT", "0")]);
    // One alone: its own failure, recorded and its pod removed.
    s.lose_readiness("u-0");
    let report = run(&reaper, SystemTime::now()).await;
    assert_eq!(
        (report.held.as_deref(), done(&report, Action::RecordFailure)),
        (None, 1)
    );
    // Three of the seven left at once (more than 20%): a common cause, all kept.
    for sub in ["u-1", "u-2", "u-3"] {
        s.lose_readiness(sub);
    }
    let report = run(&reaper, SystemTime::now()).await;
    assert!(
        report
            .held
            .as_deref()
            .is_some_and(|why| why.starts_with("3 of 7 ready servers")),
        "{report:?}"
    );
    assert_eq!(done(&report, Action::RecordFailure), 0);
    for sub in ["u-1", "u-2", "u-3"] {
        assert!(!s.pod_removed(sub), "{sub} kept");
        assert!(s.annotation(sub, claim::FAILURE).is_none());
    }
}

#[tokio::test]
async fn a_server_that_lost_its_readiness_is_kept_while_the_brokers_pods_are_not_ready() {
    let s = Setup::start().await;
    s.servers_take(Duration::ZERO);
    let spawner = s.spawner("5");
    spawner.spawn(&caller("u-1"), &reqs(), false).await.unwrap();
    s.lose_readiness("u-1");
    s.cluster.put(
        "pods",
        json!({"metadata": {"name": "rexec-broker-0", "namespace": "rexec", "labels": {"app": "rexec-broker"}},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let reaper = s.reaper(&[("REXEC_SERVER_IDLE_TIMEOUT", "0")]);
    let report = run(&reaper, SystemTime::now()).await;
    assert!(
        report
            .held
            .as_deref()
            .is_some_and(|why| why.starts_with("the broker's pods are not ready")),
        "{report:?}"
    );
    assert!(!s.pod_removed("u-1"));
    // The broker back: the server's own failure now.
    s.cluster.put(
        "pods",
        json!({"metadata": {"name": "rexec-broker-0", "namespace": "rexec", "labels": {"app": "rexec-broker"}},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    let report = run(&reaper, SystemTime::now()).await;
    assert_eq!(
        (report.held.as_deref(), done(&report, Action::RecordFailure)),
        (None, 1)
    );
}
