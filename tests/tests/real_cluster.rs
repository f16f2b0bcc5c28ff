//! The spawner, get-server, delete-server and the reaper against the real control plane
//! (scripts/cluster), each as its own identity of deploy/k8s/rbac.yaml: the API server's RBAC,
//! admission chain and quotas decide, the Job controller makes the builds' pods, the scheduler
//! binds and kwok moves the pods through their phases (readiness is simulated). One control plane
//! serves the whole scenario.

use std::time::{Duration, Instant, SystemTime};

use rexec_shared::config::Vars;
use rexec_shared::server::reaper::Reaper;
use rexec_shared::server::requirements::RequirementsPolicy;
use rexec_shared::server::spawner::{Servers, Spawned, Spawner, Terminated};
use rexec_shared::server::status::Stage;
use rexec_tests::control_plane::ControlPlane;
use rexec_tests::stack::{UNFETCHED_SOURCE_SHA256, caller};

fn vars(plane: &ControlPlane, group: &str) -> Vars {
    let kubeconfig = plane.kubeconfig(group);
    Vars::from_pairs([
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("REXEC_SERVER_SOURCE_SHA256", UNFETCHED_SOURCE_SHA256),
        ("REXEC_SPAWN_WAIT_SECONDS", "25"),
    ])
}

#[tokio::test]
async fn a_server_is_spawned_reused_replaced_and_terminated_on_a_real_control_plane() {
    let Some(plane) = ControlPlane::start() else { return };
    let spawner = Spawner::from_vars(&vars(&plane, "rexec-lambda-spawn")).unwrap();
    let policy = RequirementsPolicy::from_vars(&Vars::default()).unwrap();
    let who = caller("u-1");
    let python = policy.check(&["python==3.11"]).unwrap();

    let (outcome, view) = spawner.spawn(&who, &python, false).await.unwrap();
    assert_eq!((outcome, view.stage), (Spawned::Created, Stage::Ready), "{view:?}");
    let pod = plane.get("pod", "rexec-u-1", "rexec-server-1");
    assert!(pod["spec"]["nodeName"].as_str().unwrap().starts_with("kwok-node-"));
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

    let read = Servers::from_vars(&vars(&plane, "rexec-lambda-read")).unwrap();
    let seen = read.describe("u-1").await.unwrap().expect("a server");
    assert_eq!((seen.generation, seen.ready), (2, true));
    let delete = Servers::from_vars(&vars(&plane, "rexec-lambda-delete")).unwrap();
    assert_eq!(delete.terminate("u-1").await.unwrap(), Terminated::Deleted);

    let reaper = Reaper::from_vars(&vars(&plane, "rexec-lambda-reap")).unwrap();
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
