//! The Rexec Deployment API handlers, called with the events in `events/`, against the
//! identity-service stand-in and the Kubernetes stand-in.

use http::header;
use lambda_http::{Body, Request, Response};
use rexec_shared::http::serve::respond;
use std::time::Duration;

use rexec_stand_ins::kube::{Behaviour, Fault, INSTALL_FAILURE, PodOutcome};
use rexec_tests::events::{event, json_body};
use rexec_tests::logs::CapturedLogs;
use rexec_tests::stack::Stack;
use serde_json::{Value, json};

/// The event with its token placeholder replaced.
fn with_token(name: &str, token: &str) -> Request {
    let mut req = event(name);
    if let Some(auth) = req.headers().get(header::AUTHORIZATION).cloned() {
        let value = auth.to_str().unwrap().replace("REPLACE_WITH_TOKEN", token);
        req.headers_mut().insert(header::AUTHORIZATION, value.parse().unwrap());
    }
    if let Body::Text(text) = req.body() {
        let text = text.replace("REPLACE_WITH_TOKEN", token);
        *req.body_mut() = Body::Text(text);
    }
    req
}

fn form(name: &str, body: &str) -> Request {
    let mut req = event(name);
    *req.body_mut() = Body::Text(body.to_owned());
    req
}

struct Api {
    spawn: spawn_server::Deps,
    delete: delete_server::Deps,
    server: get_server::Deps,
}

impl Api {
    fn new(stack: &Stack) -> Self {
        let vars = stack.vars(&[]);
        Self {
            spawn: spawn_server::Deps::from_vars(&vars).unwrap(),
            delete: delete_server::Deps::from_vars(&vars).unwrap(),
            server: get_server::Deps::from_vars(&vars).unwrap(),
        }
    }

    async fn spawn(&self, req: Request) -> Response<Body> {
        respond(req, |req| spawn_server::handler(&self.spawn, req)).await
    }

    async fn delete(&self, req: Request) -> Response<Body> {
        respond(req, |req| delete_server::handler(&self.delete, req)).await
    }

    async fn server(&self, req: Request) -> Response<Body> {
        respond(req, |req| get_server::handler(&self.server, req)).await
    }
}

#[tokio::test]
async fn the_client_form_creates_reuses_refuses_and_replaces() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let token = stack.identity.issue("alice", None);

    let resp = api.spawn(with_token("spawn-server", &token)).await;
    assert_eq!(resp.status(), 201);
    let body = json_body(&resp);
    assert_eq!(body["Username"], "alice");
    assert_eq!(body["NDP_Endpoint_membership"], "/ndp_ep/ep-dev");
    assert_eq!(body["outcome"], "created");
    assert_eq!(body["Status"], "Your rexec server is ready.");
    let server = &body["server"];
    assert_eq!(
        (server["stage"].as_str(), server["ready"].as_bool()),
        (Some("ready"), Some(true))
    );
    assert_eq!(server["versions"]["scidx-rexec"], "0.1.0");
    assert_eq!(server["python_version"], "3.11");
    assert_eq!(
        server["requirements"],
        serde_json::json!(["python==3.11", "numpy>=1.26"])
    );
    assert_eq!(server["name"], "rexec-server-1");
    assert!(server["namespace"].as_str().unwrap().starts_with("rexec-alice-"));

    let resp = api.spawn(with_token("spawn-server", &token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(&resp)["outcome"], "reused");

    let other = format!("requirments=python%3D%3D3.11&requirments=pandas&force_reinstall=False&token={token}");
    let resp = api.spawn(form("spawn-server", &other)).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(json_body(&resp)["error"], "different_requirements");

    let forced = other.replace("force_reinstall=False", "force_reinstall=True");
    let resp = api.spawn(form("spawn-server", &forced)).await;
    assert_eq!(resp.status(), 201);
    let body = json_body(&resp);
    assert_eq!(
        (body["outcome"].as_str(), body["server"]["generation"].as_u64()),
        (Some("replaced"), Some(2))
    );
}

#[tokio::test]
async fn json_bodies_with_the_bearer_header_work_too() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let mut req = event("spawn-server");
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    let bearer = format!("Bearer {}", stack.identity.issue("bob", None));
    req.headers_mut().insert(header::AUTHORIZATION, bearer.parse().unwrap());
    *req.body_mut() = Body::Text(r#"{"requirements": ["python==3.12", "scipy"], "force_reinstall": false}"#.into());
    let resp = api.spawn(req).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(json_body(&resp)["server"]["python_version"], "3.12");
}

#[tokio::test]
async fn bad_spawn_requests_are_clear_4xx() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let token = stack.identity.issue("alice", None);
    let cases: Vec<(String, Option<&str>, u16, &str)> = vec![
        (
            format!("requirments=numpy&token={token}"),
            None,
            400,
            "missing_python_version",
        ),
        (format!("token={token}"), None, 400, "missing_python_version"),
        (
            format!("requirments=python%3D%3D3.11&requirments=numpy%3B%20rm%20-rf%20%2F&token={token}"),
            None,
            400,
            "invalid_requirement",
        ),
        (
            format!("requirments=python%3D%3D3.11&requirments=--index-url%20http%3A%2F%2Fevil&token={token}"),
            None,
            400,
            "invalid_requirement",
        ),
        (
            format!("requirments=python%3D%3D3.11&force_reinstall=maybe&token={token}"),
            None,
            400,
            "invalid_field",
        ),
        ("requirments=python%3D%3D3.11".into(), None, 401, "missing_token"),
        (
            "requirments=python%3D%3D3.11&token=forged".into(),
            None,
            401,
            "invalid_token",
        ),
        (
            format!("{{\"requirements\": \"python==3.11\", \"token\": \"{token}\"}}"),
            Some("application/json"),
            400,
            "malformed_body",
        ),
        (
            format!("token={token}"),
            Some("text/plain"),
            415,
            "unsupported_media_type",
        ),
        (
            format!(
                "token={token}&{}requirments=python%3D%3D3.11",
                (0..300).map(|i| format!("requirments=p{i}&")).collect::<String>()
            ),
            None,
            413,
            "payload_too_large",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let mut req = form("spawn-server", &body);
        if let Some(ct) = content_type {
            req.headers_mut().insert(header::CONTENT_TYPE, ct.parse().unwrap());
            let bearer = format!("Bearer {token}");
            req.headers_mut().insert(header::AUTHORIZATION, bearer.parse().unwrap());
        }
        let resp = api.spawn(req).await;
        assert_eq!(resp.status(), status, "{body}: {:?}", resp.body());
        let answer = json_body(&resp);
        assert_eq!(answer["error"], code, "{body}");
        assert!(answer["request_id"].is_string());
    }
    let line = json_body(
        &api.spawn(form(
            "spawn-server",
            &format!("requirments=python%3D%3D3.11&requirments=numpy%3B%20rm&token={token}"),
        ))
        .await,
    );
    assert!(line["detail"].as_str().unwrap().contains("line 2"), "{line}");
    assert_eq!(
        stack.cluster.count("POST", "namespaces"),
        0,
        "nothing bad reached the cluster"
    );
}

/// A caller's spawns are counted against their own allowance, once they are known: neither
/// anonymous requests nor another caller's spawns use it up.
#[tokio::test]
async fn a_caller_who_spawns_too_often_waits_and_no_one_else_does() {
    let stack = Stack::start().await;
    let vars = stack.vars(&[("REXEC_SPAWNS_PER_MINUTE", "3")]);
    let deps = spawn_server::Deps::from_vars(&vars).unwrap();
    let spawn = |token: String| {
        let deps = &deps;
        async move {
            let mut req = event("spawn-server");
            req.headers_mut()
                .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            req.headers_mut()
                .insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
            *req.body_mut() = Body::Text(r#"{"requirements": ["python==3.11"]}"#.into());
            respond(req, |req| spawn_server::handler(deps, req)).await
        }
    };
    for _ in 0..10 {
        assert_eq!(spawn("forged".into()).await.status(), 401);
    }
    let alice = stack.identity.issue("alice", None);
    for _ in 0..3 {
        assert!(spawn(alice.clone()).await.status().is_success());
    }
    let refused = spawn(alice.clone()).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (15..=20).contains(&wait),
        "one more every 60 / 3 s, less what the spawns took: {wait}"
    );
    assert_eq!(json_body(&refused)["error"], "too_many_spawns");
    let bob = stack.identity.issue("bob", None);
    assert!(spawn(bob).await.status().is_success(), "bob's allowance is his own");
}

#[tokio::test]
async fn an_anonymous_caller_learns_nothing_about_the_fields() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    for (body, content_type) in [
        ("requirments=python%3D%3D3.11&force_reinstall=maybe", None),
        ("requirments=numpy%3B%20rm&requirments=%24%7BHOME%7D", None),
        ("requirments=python%3D%3D3.11&force_reinstall=maybe&token=forged", None),
        (r#"{"requirements": "not a list"}"#, Some("application/json")),
        ("{not json", Some("application/json")),
    ] {
        let mut req = form("spawn-server", body);
        if let Some(ct) = content_type {
            req.headers_mut().insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        let resp = api.spawn(req).await;
        assert_eq!(resp.status(), 401, "{body}");
    }
    assert_eq!(stack.identity.calls(), 1, "only the forged token was asked about");
}

#[tokio::test]
async fn terminate_and_the_server_route() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let token = stack.identity.issue("alice", None);

    let resp = api.server(with_token("get-server", &token)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_body(&resp)["error"], "not_found");

    let resp = api.delete(with_token("delete-server", &token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(&resp)["deleted"], false);

    api.spawn(with_token("spawn-server", &token)).await;
    let resp = api.server(with_token("get-server", &token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(&resp)["name"], "rexec-server-1");

    let resp = api.delete(with_token("delete-server", &token)).await;
    let body = json_body(&resp);
    assert_eq!(
        (
            resp.status().as_u16(),
            body["deleted"].as_bool(),
            body["outcome"].as_str()
        ),
        (200, Some(true), Some("deleted"))
    );
    assert_eq!(
        json_body(&api.server(with_token("get-server", &token)).await)["phase"],
        "Terminating"
    );

    // The namespace stays: a spawn right after the terminate starts the next server at once.
    let resp = api.spawn(with_token("spawn-server", &token)).await;
    assert_eq!(resp.status(), 201);
    let body = json_body(&resp);
    assert_eq!(
        (body["outcome"].as_str(), body["server"]["generation"].as_u64()),
        (Some("created"), Some(2))
    );

    let resp = api.delete(form("delete-server", "token=forged")).await;
    assert_eq!(resp.status(), 401);
    let resp = api.delete(form("delete-server", "")).await;
    assert_eq!(resp.status(), 401);
    // A removal's form holds `token` only; anything else is refused, and nothing is removed.
    let resp = api
        .delete(form("delete-server", &format!("token={token}&force=1")))
        .await;
    assert_eq!(
        (resp.status().as_u16(), json_body(&resp)["error"].clone()),
        (400, json!("invalid_field"))
    );
    let mut not_a_form = with_token("get-server", &token);
    *not_a_form.method_mut() = http::Method::DELETE;
    not_a_form
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    *not_a_form.body_mut() = Body::Text("{}".into());
    assert_eq!(api.delete(not_a_form).await.status(), 415);
    assert_eq!(
        json_body(&api.server(with_token("get-server", &token)).await)["phase"],
        "Ready"
    );
}

#[tokio::test]
async fn a_spawn_answers_202_with_the_stage_or_422_with_the_failure() {
    let stack = Stack::start().await;
    let token = stack.identity.issue("alice", None);
    stack.cluster.set_behaviour(Behaviour {
        install_time: Duration::from_secs(30),
        ..Behaviour::default()
    });
    let vars = stack.vars(&[("REXEC_SPAWN_WAIT_SECONDS", "1")]);
    let spawn = spawn_server::Deps::from_vars(&vars).unwrap();
    let resp = respond(with_token("spawn-server", &token), |req| {
        spawn_server::handler(&spawn, req)
    })
    .await;
    assert_eq!(resp.status(), 202);
    let body = json_body(&resp);
    assert_eq!(body["server"]["stage"], "building");
    assert_eq!(
        body["Status"],
        "Your rexec server is on its way (Building the environment.). GET /rexec/server follows it."
    );

    stack.cluster.set_behaviour(Behaviour {
        pod_outcome: PodOutcome::InstallFails,
        ..Behaviour::default()
    });
    let vars = stack.vars(&[("REXEC_SPAWN_WAIT_SECONDS", "10")]);
    let spawn = spawn_server::Deps::from_vars(&vars).unwrap();
    let failing = format!("requirments=python%3D%3D3.11&requirments=nosuchpkg&force_reinstall=True&token={token}");
    let resp = respond(form("spawn-server", &failing), |req| spawn_server::handler(&spawn, req)).await;
    assert_eq!(resp.status(), 422);
    let body = json_body(&resp);
    assert_eq!(body["error"], "server_failed");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Your rexec server failed: The environment cannot be built")
            && detail.contains(INSTALL_FAILURE.trim_end()),
        "{detail}"
    );
}

#[tokio::test]
async fn callers_outside_the_allowed_groups_are_refused_everywhere() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let eve = stack.identity.issue("eve", None);
    assert_eq!(api.spawn(with_token("spawn-server", &eve)).await.status(), 403);
    assert_eq!(api.delete(with_token("delete-server", &eve)).await.status(), 403);
    assert_eq!(api.server(with_token("get-server", &eve)).await.status(), 403);
    assert_eq!(
        stack.cluster.count("POST", "namespaces") + stack.cluster.count("GET", "namespaces"),
        0
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_503() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    stack.cluster.inject(None, None, Fault::Status(503), None);
    let resp = api
        .spawn(with_token("spawn-server", &stack.identity.issue("alice", None)))
        .await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(json_body(&resp)["error"], "cluster_unavailable");
}

#[tokio::test(flavor = "current_thread")]
async fn an_rbac_refusal_is_500_and_the_log_names_the_missing_permission() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    stack
        .cluster
        .inject(Some("PATCH"), Some("networkpolicies"), Fault::Forbidden, None);
    let (logs, _guard) = CapturedLogs::start();
    let resp = api
        .spawn(with_token("spawn-server", &stack.identity.issue("alice", None)))
        .await;
    assert_eq!(resp.status(), 500);
    let body = json_body(&resp);
    assert_eq!(body["error"], "internal_error");
    assert!(
        !body["detail"].as_str().unwrap().contains("networkpolicies"),
        "no internals leak to the caller"
    );
    let line = logs
        .lines()
        .into_iter()
        .find(|l| l["level"] == "ERROR")
        .expect("an error line");
    let permission = line["permission"].as_str().unwrap();
    assert!(
        permission.contains("cannot patch resource \"networkpolicies\" in API group \"networking.k8s.io\""),
        "{permission}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn every_spawn_and_terminate_of_a_known_caller_is_an_audit_entry() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let token = stack.identity.issue("alice", None);
    let (logs, _guard) = CapturedLogs::start();
    assert_eq!(api.spawn(with_token("spawn-server", &token)).await.status(), 201);
    assert_eq!(api.spawn(with_token("spawn-server", &token)).await.status(), 200);
    let other = format!("requirments=python%3D%3D3.11&requirments=six&token={token}");
    assert_eq!(api.spawn(form("spawn-server", &other)).await.status(), 409);
    let bad = format!("requirments=python%3D%3D3.11&requirments=%21%21&token={token}");
    assert_eq!(api.spawn(form("spawn-server", &bad)).await.status(), 400);
    assert_eq!(api.delete(with_token("delete-server", &token)).await.status(), 200);
    assert_eq!(api.delete(with_token("delete-server", &token)).await.status(), 200);
    // An unknown caller changes nothing: no entry.
    assert_eq!(api.spawn(with_token("spawn-server", "not-a-token")).await.status(), 401);

    let entries: Vec<Value> = logs.lines().into_iter().filter(|l| l["message"] == "audit").collect();
    let seen: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("spawn", "created", None),
            ("spawn", "reused", None),
            ("spawn", "refused", Some("different_requirements")),
            ("spawn", "refused", Some("invalid_requirement")),
            ("terminate", "deleted", None),
            ("terminate", "already_terminating", None),
        ]
    );
    let namespace = json_body(&api.spawn(with_token("spawn-server", &token)).await)["server"]["namespace"].clone();
    for entry in &entries {
        let sub = "alice-0000-4000-8000-000000000001";
        assert_eq!((&entry["actor"], &entry["owner"]), (&json!(sub), &json!(sub)));
        assert_eq!(entry["target"], namespace);
        assert!(entry["span"]["request_id"].is_string(), "{entry}");
        assert!(!entry.to_string().contains(&token), "never the token");
    }
}

async fn broker_config(stack: &Stack, extra: &[(&str, &str)], token: Option<&str>) -> Response<Body> {
    let deps = get_broker_config::Deps::from_vars(&stack.vars(extra)).unwrap();
    let mut req = event("get-broker-config");
    req.headers_mut().remove(header::AUTHORIZATION);
    if let Some(token) = token {
        req.headers_mut()
            .insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    }
    respond(req, |req| get_broker_config::handler(&deps, req)).await
}

#[tokio::test]
async fn broker_config_from_settings_or_the_service() {
    let stack = Stack::start().await;
    let token = stack.identity.issue("alice", None);

    let resp = broker_config(
        &stack,
        &[("REXEC_BROKER_EXTERNAL_HOST", "broker.example.org")],
        Some(&token),
    )
    .await;
    let body = json_body(&resp);
    assert_eq!(body["broker_external_host"], "broker.example.org");
    assert_eq!(body["broker_external_port"], 5559);
    assert_eq!(body["broker_external_url"], "broker.example.org:5559");
    assert_eq!(body["api_url"], "https://api.example.org/rexec/spawn");

    let resp = broker_config(&stack, &[], Some(&token)).await;
    assert_eq!(resp.status(), 503, "no broker Service yet");
    assert_eq!(json_body(&resp)["error"], "broker_unavailable");

    stack.add_broker_service("LoadBalancer");
    let body = json_body(&broker_config(&stack, &[], Some(&token)).await);
    assert_eq!(body["broker_external_url"], "broker-123.elb.example.com:5559");

    stack.add_broker_service("NodePort");
    let resp = broker_config(&stack, &[], Some(&token)).await;
    assert_eq!(
        resp.status(),
        503,
        "a node port names no address: REXEC_BROKER_EXTERNAL_HOST is needed"
    );
    assert_eq!(stack.cluster.count("GET", "nodes"), 0, "nodes are never read");
}

#[tokio::test]
async fn broker_config_needs_a_token_unless_public() {
    let stack = Stack::start().await;
    let fixed = ("REXEC_BROKER_EXTERNAL_HOST", "broker.example.org");
    assert_eq!(broker_config(&stack, &[fixed], None).await.status(), 401);
    let resp = broker_config(&stack, &[fixed, ("REXEC_BROKER_CONFIG_PUBLIC", "true")], None).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_rexec_openapi_document_describes_every_route() {
    let resp = respond(event("serve-rexec-docs"), serve_rexec_docs::handler).await;
    let doc = json_body(&resp);
    for (path, method) in [
        ("/spawn", "post"),
        ("/terminate", "delete"),
        ("/server", "get"),
        ("/server", "delete"),
        ("/broker-config", "get"),
        ("/servers", "get"),
        ("/servers/{owner}", "get"),
        ("/servers/{owner}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    // The administrators' tier: tagged and described as such, with its 403.
    let admin_tag = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "admin")
        .unwrap();
    assert!(admin_tag["description"].as_str().unwrap().contains("ADMIN_GROUP_NAMES"));
    for (path, method) in [
        ("/servers", "get"),
        ("/servers/{owner}", "get"),
        ("/servers/{owner}", "delete"),
    ] {
        let operation = &doc["paths"][path][method];
        assert_eq!(operation["tags"], json!(["admin"]), "{method} {path}");
        for status in ["200", "400", "401", "403", "503"] {
            assert!(operation["responses"][status].is_object(), "{method} {path}: {status}");
        }
    }
    let list = &doc["paths"]["/servers"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["phase", "limit", "continue"]);
    let spawn = &doc["paths"]["/spawn"]["post"];
    assert!(spawn["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
    assert!(spawn["requestBody"]["content"]["application/json"].is_object());
    for status in ["200", "201", "400", "401", "403", "409", "413", "415", "503"] {
        assert!(spawn["responses"][status].is_object(), "spawn documents {status}");
    }
    for operation in [
        &doc["paths"]["/terminate"]["delete"],
        &doc["paths"]["/server"]["delete"],
    ] {
        for status in ["200", "401", "403", "503"] {
            let content = &operation["responses"][status]["content"]["application/json"];
            assert!(content["schema"].is_object(), "{status}: {operation}");
        }
    }
}

#[test]
fn only_spawn_reads_the_settings_servers_are_built_with() {
    let vars = rexec_shared::config::Vars::from_pairs([
        ("AUTH_API_URL", "http://id.example/user"),
        ("GROUP_NAMES", "/ndp_ep/ep-dev"),
        ("REXEC_SERVER_IMAGE", "python:3.11"),
        ("REXEC_SERVER_SOURCE_SHA256", "not-a-digest"),
    ]);
    assert!(get_server::Deps::from_vars(&vars).is_ok(), "get-server starts");
    assert!(delete_server::Deps::from_vars(&vars).is_ok(), "delete-server starts");
    let err = spawn_server::Deps::from_vars(&vars).err().unwrap();
    assert!(err.variable.starts_with("REXEC_SERVER_"), "{err}");
}
