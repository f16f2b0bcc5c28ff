//! The metric lines (CloudWatch's embedded metric format) the functions write: what a spawn, an
//! identity check, the cluster calls and a reaper run measure, each line a valid EMF document.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use lambda_http::{Body, Response};
use rexec_shared::http::serve::respond;
use rexec_shared::server::reaper::Reaper;
use rexec_stand_ins::identity_service::Fault;
use rexec_stand_ins::kube::{Behaviour, PodOutcome};
use rexec_tests::events::{event, spawn_json, with_bearer};
use rexec_tests::logs::CapturedLogs;
use rexec_tests::stack::Stack;
use serde_json::{Value, json};

/// The EMF documents among the captured lines, each checked against the format's rules: the
/// `_aws` metadata with a millisecond timestamp, every declared metric a top-level number or
/// array of at most 100 numbers, every dimension a top-level string.
fn documents(logs: &CapturedLogs) -> Vec<Value> {
    let documents = logs.metrics();
    for document in &documents {
        let aws = &document["_aws"];
        let timestamp = aws["Timestamp"].as_u64().expect("a timestamp in milliseconds");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now - timestamp < 60_000, "{document}");
        for directive in aws["CloudWatchMetrics"].as_array().unwrap() {
            assert!(directive["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
            for set in directive["Dimensions"].as_array().unwrap() {
                for name in set.as_array().unwrap() {
                    assert!(
                        document[name.as_str().unwrap()].is_string(),
                        "dimension {name}: {document}"
                    );
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(["Count", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap()));
                match &document[name] {
                    Value::Number(_) => {}
                    Value::Array(values) => {
                        assert!(!values.is_empty() && values.len() <= 100 && values.iter().all(Value::is_number))
                    }
                    other => panic!("{name} is {other}"),
                }
            }
        }
        assert!(!document.to_string().contains("token"), "{document}");
    }
    documents
}

/// The values of `metric` over the documents, with the dimension `dimension` if given.
fn values(documents: &[Value], metric: &str, dimension: Option<(&str, &str)>) -> Vec<f64> {
    documents
        .iter()
        .filter(|d| dimension.is_none_or(|(name, value)| d[name] == value))
        .filter(|d| dimension.is_some() || d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([[]]))
        .flat_map(|d| match &d[metric] {
            Value::Number(n) => vec![n.as_f64().unwrap()],
            Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).collect(),
            _ => vec![],
        })
        .collect()
}

/// `POST /rexec/spawn` with a JSON body.
async fn spawn(deps: &spawn_server::Deps, token: &str, body: Value) -> Response<Body> {
    respond(spawn_json(token, &body), |req| spawn_server::handler(deps, req)).await
}

fn lines(requirements: &[&str]) -> Value {
    json!({"requirements": requirements})
}

#[tokio::test(flavor = "current_thread")]
async fn a_spawn_measures_its_outcome_its_time_to_ready_the_caches_and_every_call() {
    let stack = Stack::start().await;
    let deps = spawn_server::Deps::from_vars(&stack.vars(&[("REXEC_SPAWN_WAIT_SECONDS", "10")])).unwrap();
    let (alice, bob) = (stack.identity.issue("alice", None), stack.identity.issue("bob", None));

    let (logs, _guard) = CapturedLogs::start();
    assert_eq!(spawn(&deps, &alice, lines(&["python==3.11"])).await.status(), 201);
    let first = documents(&logs);
    assert_eq!(values(&first, "Spawns", Some(("Outcome", "created"))), [1.0]);
    let ready = values(&first, "TimeToReady", None);
    assert_eq!(ready.len(), 1);
    assert!(ready[0] > 0.0 && ready[0] < 10_000.0, "{ready:?}");
    assert_eq!(values(&first, "EnvironmentCacheMisses", None), [1.0]);
    assert_eq!(values(&first, "IdentityCacheMisses", None), [1.0]);
    assert_eq!(values(&first, "IdentityLatency", None).len(), 1);
    let calls = stack.cluster.requests();
    assert_eq!(
        values(&first, "ClusterLatency", None).len(),
        calls,
        "one value per call to the API server"
    );

    // Reused: the identity from the cache, no time to ready, no environment looked up.
    assert_eq!(spawn(&deps, &alice, lines(&["python==3.11"])).await.status(), 200);
    // Bob with the same requirements: the environment is built already.
    assert_eq!(spawn(&deps, &bob, lines(&["python==3.11"])).await.status(), 201);
    let all = documents(&logs);
    assert_eq!(values(&all, "Spawns", Some(("Outcome", "reused"))), [1.0]);
    assert_eq!(values(&all, "IdentityCacheHits", None), [1.0]);
    assert_eq!(values(&all, "TimeToReady", None).len(), 2, "created ones only");
    assert_eq!(values(&all, "EnvironmentCacheHits", None), [1.0]);

    // A refusal, a failure and a 202.
    assert_eq!(
        spawn(&deps, &alice, lines(&["python==3.11", "six"])).await.status(),
        409
    );
    stack.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::InstallFails,
        ..Behaviour::default()
    });
    assert_eq!(
        spawn(&deps, &bob, lines(&["python==3.12", "nosuchpkg"])).await.status(),
        409
    );
    let forced = json!({"requirements": ["python==3.12", "nosuchpkg"], "force_reinstall": true});
    assert_eq!(spawn(&deps, &bob, forced).await.status(), 422);
    stack.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(60),
        ..Behaviour::default()
    });
    let quick = spawn_server::Deps::from_vars(&stack.vars(&[("REXEC_SPAWN_WAIT_SECONDS", "0")])).unwrap();
    let replaced = json!({"requirements": ["python==3.13"], "force_reinstall": true});
    assert_eq!(spawn(&quick, &alice, replaced).await.status(), 202);
    let all = documents(&logs);
    let outcomes: BTreeMap<&str, f64> = all
        .iter()
        .filter_map(|d| Some((d["Outcome"].as_str()?, d["Spawns"].as_f64()?)))
        .fold(BTreeMap::new(), |mut sums, (outcome, n)| {
            *sums.entry(outcome).or_default() += n;
            sums
        });
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("created", 2.0),
            ("failed", 1.0),
            ("refused", 2.0),
            ("replaced", 1.0),
            ("reused", 1.0)
        ])
    );
    assert_eq!(values(&all, "SpawnsPending", None), [1.0]);
    assert_eq!(
        values(&all, "TimeToReady", None).len(),
        2,
        "neither the failure nor the 202"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_unavailable_identity_provider_is_counted() {
    let stack = Stack::start().await;
    let deps = get_server::Deps::from_vars(&stack.vars(&[])).unwrap();
    let token = stack.identity.issue("alice", None);
    stack.identity.set_fault(Fault::ServerError);
    let (logs, _guard) = CapturedLogs::start();
    let req = with_bearer(event("get-server"), Some(&token));
    let resp = respond(req, |req| get_server::handler(&deps, req)).await;
    assert_eq!(resp.status(), 503);
    let documents = documents(&logs);
    assert_eq!(values(&documents, "IdentityUnavailable", None), [1.0]);
    assert_eq!(values(&documents, "IdentityLatency", None).len(), 1);
    assert!(
        values(&documents, "ClusterLatency", None).is_empty(),
        "the cluster was not asked"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_reaper_run_counts_the_servers_running_and_what_it_removed() {
    let stack = Stack::start().await;
    let vars = stack.vars(&[]);
    let deps = spawn_server::Deps::from_vars(&vars).unwrap();
    for user in ["alice", "bob"] {
        let token = stack.identity.issue(user, None);
        assert_eq!(spawn(&deps, &token, lines(&["python==3.11"])).await.status(), 201);
    }
    let expiring = Reaper::from_vars(&stack.vars(&[("REXEC_SERVER_MAX_AGE", "3600")])).unwrap();
    let (logs, _guard) = CapturedLogs::start();
    let now = SystemTime::now();
    let run = |at: SystemTime| rexec_shared::metrics::scope(expiring.run(at, Instant::now() + Duration::from_secs(60)));
    run(now).await.unwrap();
    assert_eq!(values(&documents(&logs), "ServersRunning", None), [2.0]);
    assert!(values(&documents(&logs), "Reaped", Some(("Action", "expire"))).is_empty());
    run(now + Duration::from_secs(7200)).await.unwrap();
    let all = documents(&logs);
    assert_eq!(values(&all, "Reaped", Some(("Action", "expire"))), [2.0]);
    assert_eq!(
        values(&all, "ServersRunning", None),
        [2.0, 2.0],
        "counted before the run acts"
    );
    run(now + Duration::from_secs(7300)).await.unwrap();
    assert_eq!(values(&documents(&logs), "ServersRunning", None), [2.0, 2.0, 0.0]);
}
