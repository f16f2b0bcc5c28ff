//! The ClusterRole of deploy/k8s grants exactly what the code uses: every operation of the
//! functions runs against the Kubernetes stand-in, which records each (group, resource, verb).

use std::collections::BTreeSet;

use rexec_shared::broker::BrokerDirectory;
use rexec_shared::cluster::Cluster;
use rexec_shared::identity::Identity;
use rexec_shared::requirements::RequirementsPolicy;
use rexec_shared::spawner::Spawner;
use rexec_tests::stack::Stack;
use serde_norway::Value;

fn cluster_role_rules() -> BTreeSet<(String, String, String)> {
    let path = format!("{}/../deploy/k8s/rbac.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut granted = BTreeSet::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(document).unwrap();
        if doc["kind"].as_str() != Some("ClusterRole") {
            continue;
        }
        for rule in doc["rules"].as_sequence().unwrap() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        granted.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    granted
}

#[tokio::test]
async fn the_cluster_role_grants_exactly_what_the_functions_use() {
    let stack = Stack::start().await;
    let vars = stack.vars(&[]);
    let spawner = Spawner::from_vars(&vars).unwrap();
    let policy = RequirementsPolicy::from_vars(&vars).unwrap();
    let who = Identity {
        sub: "u-1".into(),
        username: "u".into(),
        roles: vec![],
        groups: vec![],
        client: None,
        expires_at: None,
    };

    spawner
        .spawn(&who, &policy.check(&["python==3.11"]).unwrap(), false)
        .await
        .unwrap();
    spawner
        .spawn(&who, &policy.check(&["python==3.11"]).unwrap(), false)
        .await
        .unwrap();
    spawner
        .spawn(&who, &policy.check(&["python==3.11", "numpy"]).unwrap(), true)
        .await
        .unwrap();
    spawner.describe(&who).await.unwrap().unwrap();
    spawner.terminate(&who).await.unwrap();
    stack.add_broker_service("NodePort");
    BrokerDirectory::from_vars(&vars)
        .unwrap()
        .endpoint(&Cluster::from_vars(&vars).unwrap())
        .await
        .unwrap();

    let used = stack.cluster.permissions_used();
    let granted = cluster_role_rules();
    assert_eq!(
        used,
        granted,
        "used but not granted: {:?}; granted but unused: {:?}",
        used.difference(&granted).collect::<Vec<_>>(),
        granted.difference(&used).collect::<Vec<_>>()
    );
}
