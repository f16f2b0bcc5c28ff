//! Each function's Kubernetes role in deploy/k8s/rbac.yaml grants exactly what its code uses,
//! and nothing another function needs: every function runs against the Kubernetes stand-in with
//! those rules enforced, under the bearer token of its own group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use rexec_shared::cluster::{Cluster, ClusterError};
use rexec_shared::config::Vars;
use rexec_shared::server::broker::BrokerDirectory;
use rexec_shared::server::error::ServerError;
use rexec_shared::server::reaper::Reaper;
use rexec_shared::server::requirements::RequirementsPolicy;
use rexec_shared::server::spawner::{Servers, Spawner, Terminated};
use rexec_shared::server::status::Stage;
use rexec_stand_ins::kube::{Behaviour, Grant, KubeconfigFile, Permission, PodOutcome};
use rexec_tests::stack::{Stack, caller};
use serde_norway::Value;

/// The grants of each Kubernetes group, from the roles and bindings of deploy/k8s/rbac.yaml.
fn grants_by_group() -> BTreeMap<String, Vec<Grant>> {
    let path = format!("{}/../deploy/k8s/rbac.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut roles: HashMap<(String, String), Vec<Permission>> = HashMap::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
    {
        let mut permissions = Vec::new();
        for rule in doc["rules"].as_sequence().unwrap() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        permissions.push((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
        let key = (
            doc["kind"].as_str().unwrap().to_owned(),
            doc["metadata"]["name"].as_str().unwrap().to_owned(),
        );
        roles.insert(key, permissions);
    }
    let mut grants: BTreeMap<String, Vec<Grant>> = BTreeMap::new();
    for binding in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRoleBinding" | "RoleBinding")))
    {
        let role = (
            binding["roleRef"]["kind"].as_str().unwrap().to_owned(),
            binding["roleRef"]["name"].as_str().unwrap().to_owned(),
        );
        let namespace = binding["metadata"]["namespace"].as_str().map(str::to_owned);
        for subject in binding["subjects"].as_sequence().unwrap() {
            assert_eq!(
                subject["kind"].as_str(),
                Some("Group"),
                "roles are bound to groups only"
            );
            grants
                .entry(subject["name"].as_str().unwrap().to_owned())
                .or_default()
                .extend(roles[&role].iter().map(|permission| Grant {
                    permission: permission.clone(),
                    namespace: namespace.clone(),
                }));
        }
    }
    grants
}

fn token(group: &str) -> String {
    format!("{group}-token")
}

#[tokio::test]
async fn each_function_is_granted_exactly_what_it_uses_and_no_more() {
    let stack = Stack::start().await;
    let grants = grants_by_group();
    assert_eq!(
        grants.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "rexec-lambda-broker",
            "rexec-lambda-delete",
            "rexec-lambda-list",
            "rexec-lambda-read",
            "rexec-lambda-reap",
            "rexec-lambda-spawn"
        ]
    );
    stack.cluster.enforce_rbac(
        grants
            .iter()
            .map(|(group, rules)| (token(group), rules.clone()))
            .collect(),
    );
    let kubeconfigs: BTreeMap<&str, KubeconfigFile> = grants
        .keys()
        .map(|group| (group.as_str(), stack.cluster.write_kubeconfig(&token(group))))
        .collect();
    let vars = |group: &str| -> Vars { stack.vars(&[("KUBECONFIG", kubeconfigs[group].to_str().unwrap())]) };
    let policy = RequirementsPolicy::from_vars(&vars("rexec-lambda-spawn")).unwrap();
    let who = caller("u-1");

    // spawn-server: create, reuse, replace, each waited for; then a build that fails.
    let spawn = Spawner::from_vars(&vars("rexec-lambda-spawn")).unwrap();
    for (lines, force) in [
        (&["python==3.11"][..], false),
        (&["python==3.11"], false),
        (&["python==3.11", "numpy"], true),
    ] {
        let (_, view) = spawn.spawn(&who, &policy.check(lines).unwrap(), force).await.unwrap();
        assert_eq!(view.stage, Stage::Ready);
    }
    stack.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::InstallFails,
        ..Behaviour::default()
    });
    let (_, view) = spawn
        .spawn(&who, &policy.check(&["python==3.11", "nosuchpkg"]).unwrap(), true)
        .await
        .unwrap();
    assert_eq!(view.stage, Stage::Failed);
    // get-server, while the failed server's pod stops.
    let read = Servers::from_vars(&vars("rexec-lambda-read")).unwrap();
    let view = read.describe(&who.sub).await.unwrap().expect("a server");
    assert_eq!(view.stage, Stage::Failed);
    // get-server while an environment is built: the build's progress, from its wait's log.
    stack.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(30),
        ..Behaviour::default()
    });
    let answer_at_once = stack.vars(&[
        ("KUBECONFIG", kubeconfigs["rexec-lambda-spawn"].to_str().unwrap()),
        ("REXEC_SPAWN_WAIT_SECONDS", "0"),
    ]);
    let building = caller("u-3");
    Spawner::from_vars(&answer_at_once)
        .unwrap()
        .spawn(&building, &policy.check(&["python==3.11"]).unwrap(), false)
        .await
        .unwrap();
    let view = read.describe(&building.sub).await.unwrap().expect("a server");
    assert_eq!(view.stage, Stage::Building);
    // get-broker-config
    stack.add_broker_service("LoadBalancer");
    let broker_vars = vars("rexec-lambda-broker");
    BrokerDirectory::from_vars(&broker_vars)
        .unwrap()
        .endpoint(&Cluster::from_vars(&broker_vars).unwrap())
        .await
        .unwrap();
    // list-servers: two pages, the second from the first's continue token.
    let list = Servers::from_vars(&vars("rexec-lambda-list")).unwrap();
    let first = list.list(None, 1, None).await.unwrap();
    assert_eq!(first.servers.len(), 1);
    let second = list.list(None, 1, first.next.as_deref()).await.unwrap();
    assert_ne!(first.servers[0].owner, second.servers[0].owner);
    // delete-server
    let delete = Servers::from_vars(&vars("rexec-lambda-delete")).unwrap();
    assert_eq!(delete.terminate(&who.sub).await.unwrap(), Terminated::Deleted);
    // reap-servers, with the metrics API: an idle server marked, then removed; the building one
    // failed for its time; then the namespaces left without a server.
    stack.cluster.install_metrics();
    stack.cluster.set_behaviour(Behaviour {
        install_time: Duration::ZERO,
        start_time: Duration::ZERO,
        ..Behaviour::default()
    });
    let idle = caller("u-4");
    spawn
        .spawn(&idle, &policy.check(&["python==3.11"]).unwrap(), false)
        .await
        .unwrap();
    let idle_namespace = spawn.servers().owner(&idle.sub).namespace;
    stack.cluster.set_cpu_usage(&idle_namespace, "rexec-server-1", "0");
    let reaper = Reaper::from_vars(&vars("rexec-lambda-reap")).unwrap();
    let now = SystemTime::now();
    for at in [
        now,
        now + Duration::from_secs(5 * 3600),
        now + Duration::from_secs(9 * 24 * 3600),
    ] {
        let report = reaper.run(at, Instant::now() + Duration::from_secs(60)).await.unwrap();
        assert_eq!(report.left, 0, "{report:?}");
    }
    let gone = stack.cluster.get("namespaces", "", &idle_namespace);
    assert!(gone.is_none_or(|ns| ns["status"]["phase"] == "Terminating"));

    for (group, rules) in &grants {
        let used = stack.cluster.permissions_used_by(&token(group));
        let granted: BTreeSet<Permission> = rules.iter().map(|g| g.permission.clone()).collect();
        assert_eq!(
            used,
            granted,
            "{group}: used but not granted: {:?}; granted but unused: {:?}",
            used.difference(&granted).collect::<Vec<_>>(),
            granted.difference(&used).collect::<Vec<_>>()
        );
    }

    // The read-only functions cannot write; deleting cannot create; none reads another's Services.
    let other = caller("u-2");
    let reqs = policy.check(&["python==3.11"]).unwrap();
    for group in ["rexec-lambda-read", "rexec-lambda-broker", "rexec-lambda-delete"] {
        let err = Spawner::from_vars(&vars(group))
            .unwrap()
            .spawn(&other, &reqs, false)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServerError::Cluster(ClusterError::Forbidden(_))),
            "{group} cannot spawn: {err:?}"
        );
    }
    // (spawn-server removes pods itself, when it replaces a server or one failed.)
    stack.cluster.set_behaviour(Behaviour::default());
    spawn.spawn(&other, &reqs, false).await.unwrap();
    for group in ["rexec-lambda-read", "rexec-lambda-broker"] {
        let err = Servers::from_vars(&vars(group)).unwrap().terminate(&other.sub).await;
        assert!(
            matches!(err, Err(ServerError::Cluster(ClusterError::Forbidden(_)))),
            "{group} cannot terminate: {err:?}"
        );
    }
    let namespace = spawn.servers().owner(&other.sub).namespace;
    let pod = stack.cluster.get("pods", &namespace, "rexec-server-1").unwrap();
    assert!(pod["metadata"].get("deletionTimestamp").is_none());
}
