//! The administrators' tier of the Rexec Deployment API (`GET /rexec/servers`, `GET` and
//! `DELETE /rexec/servers/{owner}`), and every route's answer to everyone else: a caller who is
//! no administrator never sees nor touches another caller's server, through any route.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use rexec_shared::http::serve::respond;
use rexec_shared::server::claim;
use rexec_stand_ins::kube::{Behaviour, PodOutcome};
use rexec_tests::events::{event, json_body, spawn_json, with_bearer};
use rexec_tests::logs::CapturedLogs;
use rexec_tests::stack::Stack;
use serde_json::{Value, json};

const ALICE: &str = "alice-0000-4000-8000-000000000001";
const BOB: &str = "bob-0000-4000-8000-000000000001";

struct Api {
    spawn: spawn_server::Deps,
    delete: delete_server::Deps,
    server: get_server::Deps,
    list: list_servers::Deps,
}

impl Api {
    /// The functions, with bob's group (`/ndp_ep/admins`) as the administrators'.
    fn new(stack: &Stack) -> Self {
        let vars = stack.vars(&[("ADMIN_GROUP_NAMES", "/ndp_ep/admins")]);
        Self {
            spawn: spawn_server::Deps::from_vars(&vars).unwrap(),
            delete: delete_server::Deps::from_vars(&vars).unwrap(),
            server: get_server::Deps::from_vars(&vars).unwrap(),
            list: list_servers::Deps::from_vars(&vars).unwrap(),
        }
    }

    /// `POST /rexec/spawn` with a JSON body.
    async fn spawn(&self, token: &str, body: Value) -> Response<Body> {
        respond(spawn_json(token, &body), |req| spawn_server::handler(&self.spawn, req)).await
    }

    /// Alice and bob each spawn a server (python 3.11 with `alice_extra`, python 3.12).
    async fn spawn_both(&self, alice: &str, bob: &str, alice_extra: &[&str]) {
        let lines: Vec<&str> = ["python==3.11"]
            .into_iter()
            .chain(alice_extra.iter().copied())
            .collect();
        assert_eq!(self.spawn(alice, json!({"requirements": lines})).await.status(), 201);
        assert_eq!(
            self.spawn(bob, json!({"requirements": ["python==3.12"]}))
                .await
                .status(),
            201
        );
    }

    /// `GET /rexec/servers` with `query` (pairs, repeated names kept).
    async fn list(&self, token: Option<&str>, query: &[(&str, &str)]) -> Response<Body> {
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in query {
            params.entry(name.to_string()).or_default().push(value.to_string());
        }
        let req = with_bearer(event("list-servers"), token).with_query_string_parameters(params);
        respond(req, |req| list_servers::handler(&self.list, req)).await
    }

    /// `GET /rexec/servers/{owner}`.
    async fn server_of(&self, token: Option<&str>, owner: &str) -> Response<Body> {
        let req = of_owner(with_bearer(event("get-server-of-owner"), token), owner);
        respond(req, |req| get_server::handler(&self.server, req)).await
    }

    /// `DELETE /rexec/servers/{owner}`.
    async fn delete_of(&self, token: Option<&str>, owner: &str) -> Response<Body> {
        let req = of_owner(with_bearer(event("delete-server-of-owner"), token), owner);
        respond(req, |req| delete_server::handler(&self.delete, req)).await
    }

    /// The caller's own routes: `GET /rexec/server` and `DELETE /rexec/server`.
    async fn own(&self, token: &str, method: Method) -> Response<Body> {
        let mut req = with_bearer(event("get-server"), Some(token));
        *req.method_mut() = method.clone();
        match method {
            Method::DELETE => respond(req, |req| delete_server::handler(&self.delete, req)).await,
            _ => respond(req, |req| get_server::handler(&self.server, req)).await,
        }
    }
}

fn of_owner(req: Request, owner: &str) -> Request {
    req.with_path_parameters(HashMap::from([("owner".to_string(), owner.to_string())]))
}

fn owners(page: &Value) -> Vec<&str> {
    page["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["owner"].as_str().unwrap())
        .collect()
}

fn error(resp: &Response<Body>) -> (u16, String) {
    (
        resp.status().as_u16(),
        json_body(resp)["error"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn an_administrator_lists_reads_and_removes_any_server() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (alice, bob) = (stack.identity.issue("alice", None), stack.identity.issue("bob", None));
    api.spawn_both(&alice, &bob, &["numpy"]).await;

    // Every server, with its owner, username, phase, stage, age, requirements and resources.
    let resp = api.list(Some(&bob), &[]).await;
    assert_eq!(resp.status(), 200);
    let page = json_body(&resp);
    assert_eq!(owners(&page), [ALICE, BOB], "in the order of their namespaces");
    assert_eq!(page["continue"], Value::Null);
    let first = &page["servers"][0];
    assert_eq!(first["username"], "alice");
    assert_eq!(
        (first["phase"].as_str(), first["stage"].as_str()),
        (Some("Ready"), Some("ready"))
    );
    assert_eq!(first["requirements"], json!(["python==3.11", "numpy"]));
    assert!(first["age_seconds"].is_u64());
    assert_eq!(first["resources"]["requests"]["cpu"], "250m");
    assert_eq!(first["resources"]["limits"]["memory"], "4Gi");
    assert_eq!(first["idle_seconds"], Value::Null, "not marked idle by the reaper");

    // By phase, in any case; a phase nobody is in gives an empty last page.
    assert_eq!(
        owners(&json_body(&api.list(Some(&bob), &[("phase", "READY")]).await)).len(),
        2
    );
    let failed = json_body(&api.list(Some(&bob), &[("phase", "failed")]).await);
    assert_eq!((owners(&failed).len(), &failed["continue"]), (0, &Value::Null));

    // Page by page, with the cluster's continue token.
    let one = json_body(&api.list(Some(&bob), &[("limit", "1")]).await);
    assert_eq!(owners(&one), [ALICE]);
    let token = one["continue"].as_str().expect("a next page");
    let two = json_body(&api.list(Some(&bob), &[("limit", "1"), ("continue", token)]).await);
    assert_eq!((owners(&two), &two["continue"]), (vec![BOB], &Value::Null));

    // One server, as its owner sees it; idle time once the reaper has marked it.
    let namespace = first["namespace"].as_str().unwrap();
    let mut cm = stack.cluster.get("configmaps", namespace, claim::NAME).unwrap();
    let ten_minutes_ago = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(600));
    cm["metadata"]["annotations"][claim::IDLE_SINCE] = json!(ten_minutes_ago.to_string());
    stack.cluster.put("configmaps", cm);
    let resp = api.server_of(Some(&bob), ALICE).await;
    assert_eq!(resp.status(), 200);
    let server = json_body(&resp);
    assert_eq!(
        (server["owner"].as_str(), server["username"].as_str()),
        (Some(ALICE), Some("alice"))
    );
    assert_eq!(server["idle_since"], json!(ten_minutes_ago.to_string()));
    assert!(
        (600..700).contains(&server["idle_seconds"].as_u64().unwrap()),
        "{server}"
    );
    assert_eq!(
        error(&api.server_of(Some(&bob), "nobody").await),
        (404, "not_found".into())
    );

    // Removed as its owner's terminate would, and the audit trail names the administrator.
    let (logs, _guard) = CapturedLogs::start();
    let resp = api.delete_of(Some(&bob), ALICE).await;
    assert_eq!(resp.status(), 200);
    let answer = json_body(&resp);
    assert_eq!(
        (
            answer["outcome"].as_str(),
            answer["owner"].as_str(),
            answer["deleted"].as_bool()
        ),
        (Some("deleted"), Some(ALICE), Some(true))
    );
    assert_eq!(answer["Status"], "This owner's rexec server is being removed.");
    let audit: Vec<Value> = logs.lines().into_iter().filter(|l| l["message"] == "audit").collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            &audit[0]["event"],
            &audit[0]["actor"],
            &audit[0]["owner"],
            &audit[0]["outcome"]
        ),
        (&json!("admin_delete"), &json!(BOB), &json!(ALICE), &json!("deleted"))
    );
    assert_eq!(audit[0]["target"], first["namespace"]);
    assert!(audit[0]["span"]["request_id"].is_string());
    assert!(!audit[0].to_string().contains(&bob), "never the token");
    let after = json_body(&api.list(Some(&bob), &[]).await);
    assert!(
        after["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["owner"] != ALICE || s["phase"] == "Terminating"),
        "{after}"
    );
    let again = json_body(&api.delete_of(Some(&bob), ALICE).await);
    assert_ne!(again["outcome"], "deleted");
    assert_eq!(
        json_body(&api.delete_of(Some(&bob), "nobody").await)["outcome"],
        "nothing_there"
    );
}

#[tokio::test]
async fn bad_queries_and_owners_are_clear_400s() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let bob = stack.identity.issue("bob", None);
    api.spawn(&bob, json!({"requirements": ["python==3.12"]})).await;
    for query in [
        &[("phase", "sleeping")][..],
        &[("limit", "0")],
        &[("limit", "101")],
        &[("limit", "ten")],
        &[("limit", "1"), ("limit", "2")],
        &[("phas", "Ready")],
        &[("continue", "")],
        &[("continue", "a b")],
    ] {
        assert_eq!(
            error(&api.list(Some(&bob), query).await),
            (400, "invalid_query".into()),
            "{query:?}"
        );
    }
    let body = json_body(&api.list(Some(&bob), &[("phas", "<script>")]).await);
    assert!(!body.to_string().contains("script"), "the input is not echoed: {body}");
    assert_eq!(
        error(&api.list(Some(&bob), &[("continue", "bm90LWEtdG9rZW4")]).await),
        (400, "invalid_continue".into())
    );
    for owner in ["a\nb", &"x".repeat(256)] {
        assert_eq!(
            error(&api.server_of(Some(&bob), owner).await),
            (400, "invalid_owner".into())
        );
        assert_eq!(
            error(&api.delete_of(Some(&bob), owner).await),
            (400, "invalid_owner".into())
        );
    }
    // A sub that is not a DNS label names its hashed namespace: nothing there.
    assert_eq!(error(&api.server_of(Some(&bob), "Ünïcode sub/..").await).0, 404);
}

#[tokio::test]
async fn no_one_else_sees_or_touches_another_callers_server() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (alice, bob, eve) = (
        stack.identity.issue("alice", None),
        stack.identity.issue("bob", None),
        stack.identity.issue("eve", None),
    );
    api.spawn_both(&alice, &bob, &[]).await;
    let requests = stack.cluster.requests();

    let (logs, _guard) = CapturedLogs::start();
    // Alice (allowed, no administrator), eve (in no allowed group), nobody (no token).
    for (who, token, refusal) in [
        ("alice", Some(alice.as_str()), (403, "not_admin")),
        ("eve", Some(eve.as_str()), (403, "forbidden")),
        ("nobody", None, (401, "missing_token")),
    ] {
        let refusal = (refusal.0, refusal.1.to_owned());
        assert_eq!(error(&api.list(token, &[]).await), refusal, "{who}: GET /servers");
        assert_eq!(error(&api.list(token, &[("phase", "Ready")]).await), refusal, "{who}");
        for owner in [BOB, ALICE, "nobody"] {
            assert_eq!(
                error(&api.server_of(token, owner).await),
                refusal,
                "{who}: GET /servers/{owner}"
            );
            assert_eq!(
                error(&api.delete_of(token, owner).await),
                refusal,
                "{who}: DELETE /servers/{owner}"
            );
        }
    }
    assert_eq!(
        stack.cluster.requests(),
        requests,
        "refused before the cluster is asked anything"
    );
    // Alice's own routes reach her server only.
    let own = json_body(&api.own(&alice, Method::GET).await);
    assert_eq!(
        (own["owner"].as_str(), own["username"].as_str()),
        (Some(ALICE), Some("alice"))
    );
    assert!(!own.to_string().contains(BOB));
    let eve_own = api.own(&eve, Method::GET).await;
    assert_eq!(error(&eve_own), (403, "forbidden".into()));
    let bob_server = json_body(&api.server_of(Some(&bob), BOB).await);
    assert_eq!(
        (bob_server["phase"].as_str(), bob_server["ready"].as_bool()),
        (Some("Ready"), Some(true))
    );

    // Alice's refused removals of others' servers are in the audit trail; nobody's and eve's are
    // not (unknown or not admitted callers write none), and no entry carries a token.
    let audit: Vec<Value> = logs.lines().into_iter().filter(|l| l["message"] == "audit").collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    for entry in &audit {
        assert_eq!(
            (&entry["event"], &entry["actor"], &entry["outcome"], &entry["reason"]),
            (
                &json!("admin_delete"),
                &json!(ALICE),
                &json!("refused"),
                &json!("not_admin")
            )
        );
        assert!(
            ![&alice, &bob, &eve]
                .iter()
                .any(|t| entry.to_string().contains(t.as_str()))
        );
    }

    // The callers' routes act on the caller's own server, an administrator's included: alice's
    // replacement leaves bob's server as it was, bob's terminate leaves alice's, alice's removes
    // hers only.
    let replaced = api
        .spawn(
            &alice,
            json!({"requirements": ["python==3.12"], "force_reinstall": true}),
        )
        .await;
    assert_eq!(json_body(&replaced)["server"]["owner"], ALICE);
    assert_eq!(json_body(&api.server_of(Some(&bob), BOB).await)["generation"], 1);
    let form = format!("token={bob}");
    let mut terminate = event("delete-server");
    *terminate.body_mut() = Body::Text(form);
    let terminated = json_body(&respond(terminate, |req| delete_server::handler(&api.delete, req)).await);
    assert_eq!(
        (terminated["owner"].as_str(), terminated["outcome"].as_str()),
        (Some(BOB), Some("deleted"))
    );
    assert_eq!(json_body(&api.own(&alice, Method::GET).await)["phase"], "Ready");
    assert_eq!(json_body(&api.own(&alice, Method::DELETE).await)["owner"], ALICE);
    let page = json_body(&api.list(Some(&bob), &[]).await);
    assert!(
        page["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["phase"] == "Terminating"),
        "{page}"
    );
}

#[tokio::test]
async fn failed_servers_are_listed_with_their_reason_and_claims_outside_our_namespaces_are_not() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (alice, bob) = (stack.identity.issue("alice", None), stack.identity.issue("bob", None));
    stack.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::InstallFails,
        ..Behaviour::default()
    });
    assert_eq!(
        api.spawn(&alice, json!({"requirements": ["python==3.11", "nosuchpkg"]}))
            .await
            .status(),
        422
    );
    // A claim look-alike in a namespace this service does not manage for its recorded owner.
    stack
        .cluster
        .put("namespaces", json!({"metadata": {"name": "elsewhere"}}));
    stack.cluster.put(
        "configmaps",
        json!({"metadata": {"name": claim::NAME, "namespace": "elsewhere",
            "labels": {"app.kubernetes.io/managed-by": "rexec-lambda"},
            "annotations": {"rexec.ndp.io/sub": "mallory", claim::DIGEST: "0", claim::GENERATION: "1"}}}),
    );
    let page = json_body(&api.list(Some(&bob), &[]).await);
    assert_eq!(owners(&page), [ALICE]);
    let failed = &page["servers"][0];
    assert_eq!(failed["phase"], "Failed");
    assert!(failed["reason"].as_str().unwrap().contains("nosuchpkg"), "{failed}");
    assert_eq!(
        owners(&json_body(&api.list(Some(&bob), &[("phase", "Failed")]).await)),
        [ALICE]
    );
    assert!(owners(&json_body(&api.list(Some(&bob), &[("phase", "Ready")]).await)).is_empty());
}
