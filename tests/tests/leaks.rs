//! No secret leaves and no token is kept: with a canary in the function's environment, every
//! route is driven with inputs built to expand or reflect it (`${VAR}`, `$VAR`, `%VAR%`, ...) and
//! with recognisable tokens, valid and invalid; neither the canary nor a token appears in any
//! answer (status, headers, body), any log line (at trace level) or any Kubernetes object.
//!
//! Its own test binary, with one test: the environment is set before any other thread exists.

use lambda_http::{Body, Request, Response};
use rexec_shared::http::serve::respond;
use rexec_tests::events::event_with;
use rexec_tests::logs::CapturedLogs;
use rexec_tests::stack::Stack;

const VARIABLES: [&str; 2] = ["AWS_SECRET_ACCESS_KEY", "REXEC_CANARY"];
const FUNCTIONS: [&str; 9] = [
    "get-health",
    "get-status",
    "get-rexec-status",
    "serve-ndp-docs",
    "spawn-server",
    "delete-server",
    "get-server",
    "get-broker-config",
    "serve-rexec-docs",
];

/// Every way a text could ask for a variable to be expanded.
fn expansions() -> Vec<String> {
    VARIABLES
        .iter()
        .flat_map(|v| {
            [
                format!("${{{v}}}"),
                format!("${v}"),
                format!("%{v}%"),
                format!("${{env:{v}}}"),
                format!("$({v})"),
            ]
        })
        .collect()
}

fn hostile_lines(x: &str) -> Vec<String> {
    vec![
        format!("pkg @ {x}"),
        format!("pkg @ https://example.org/{x}.tar.gz"),
        format!("pkg @ file://{x}"),
        x.to_owned(),
        format!("pkg=={x}"),
        format!("pkg[{x}]"),
        format!("pkg; python_version == '{x}'"),
    ]
}

struct Functions {
    rexec_status: get_rexec_status::Deps,
    status: get_status::Deps,
    spawn: Vec<spawn_server::Deps>,
    delete: delete_server::Deps,
    server: get_server::Deps,
    broker: get_broker_config::Deps,
}

impl Functions {
    async fn call(&self, name: &str, req: Request) -> Vec<Response<Body>> {
        let mut answers = Vec::new();
        match name {
            "get-health" => answers.push(respond(req, get_health::handler).await),
            "get-status" => answers.push(respond(req, |r| get_status::handler(&self.status, r)).await),
            "get-rexec-status" => {
                answers.push(respond(req, |r| get_rexec_status::handler(&self.rexec_status, r)).await)
            }
            "serve-ndp-docs" => answers.push(respond(req, serve_ndp_docs::handler).await),
            "serve-rexec-docs" => answers.push(respond(req, serve_rexec_docs::handler).await),
            "spawn-server" => {
                for deps in &self.spawn {
                    answers.push(respond(req.clone(), |r| spawn_server::handler(deps, r)).await);
                }
            }
            "delete-server" => answers.push(respond(req, |r| delete_server::handler(&self.delete, r)).await),
            "get-server" => answers.push(respond(req, |r| get_server::handler(&self.server, r)).await),
            "get-broker-config" => answers.push(respond(req, |r| get_broker_config::handler(&self.broker, r)).await),
            other => unreachable!("{other}"),
        }
        answers
    }
}

/// The event of `name` with `token` in the Authorization header (or none), and `body`.
fn request(name: &str, token: Option<&str>, body: Option<(&str, String)>) -> Request {
    let authorization = token.map(|t| format!("Bearer {t}"));
    event_with(
        name,
        authorization.as_deref().map(str::as_bytes),
        body.map(|(content_type, text)| (Some(content_type), text.into_bytes())),
    )
}

fn form_request(name: &str, pairs: &[(&str, &str)]) -> Request {
    let form = serde_urlencoded::to_string(pairs).unwrap();
    request(name, None, Some(("application/x-www-form-urlencoded", form)))
}

fn text(resp: &Response<Body>) -> String {
    format!(
        "{} {:?} {}",
        resp.status(),
        resp.headers(),
        String::from_utf8_lossy(resp.body().as_ref())
    )
}

#[test]
fn no_secret_and_no_token_leaves_through_any_route() {
    let canary = format!("canary{}", uuid::Uuid::new_v4().simple());
    // SAFETY: this binary's only test sets its environment before any other thread exists.
    unsafe {
        for variable in VARIABLES {
            std::env::set_var(variable, &canary);
        }
        std::env::set_var("RUST_LOG", "trace");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stack = Stack::start().await;
        stack.add_broker_service("LoadBalancer");
        let vars = stack.vars(&[]);
        let open = stack.vars(&[("REXEC_ALLOW_DIRECT_URLS", "true")]);
        let functions = Functions {
            rexec_status: get_rexec_status::Deps::from_vars(&vars).unwrap(),
            status: get_status::Deps::from_vars(&vars).unwrap(),
            spawn: vec![
                spawn_server::Deps::from_vars(&vars).unwrap(),
                spawn_server::Deps::from_vars(&open).unwrap(),
            ],
            delete: delete_server::Deps::from_vars(&vars).unwrap(),
            server: get_server::Deps::from_vars(&vars).unwrap(),
            broker: get_broker_config::Deps::from_vars(&vars).unwrap(),
        };
        let alice = stack.identity.issue("alice", None);
        let forged = format!("RECOGNISABLE.{}", uuid::Uuid::new_v4().simple());
        let (logs, _guard) = CapturedLogs::start();
        let mut answers = Vec::new();
        let mut objects = String::new();

        for name in FUNCTIONS {
            // A good first spawn (the objects written carry no token), then the hostile inputs.
            let mut requests = vec![
                form_request(
                    name,
                    &[
                        ("requirments", "python==3.11"),
                        ("requirments", "six"),
                        ("token", &alice),
                    ],
                ),
                request(name, Some(&alice), None),
                request(name, Some(&forged), None),
            ];
            for x in expansions() {
                requests.push(request(name, Some(&x), None));
                let lines = hostile_lines(&x);
                let mut pairs = vec![
                    ("requirments", "python==3.11"),
                    ("force_reinstall", x.as_str()),
                    ("token", &alice),
                ];
                pairs.extend(lines.iter().map(|line| ("requirments", line.as_str())));
                requests.push(form_request(name, &pairs));
                for line in &lines {
                    requests.push(form_request(
                        name,
                        &[
                            ("requirments", "python==3.11"),
                            ("requirments", line),
                            ("token", &alice),
                        ],
                    ));
                    let json = serde_json::json!({"requirements": ["python==3.11", line], "force_reinstall": x});
                    requests.push(request(
                        name,
                        Some(&alice),
                        Some(("application/json", json.to_string())),
                    ));
                }
                let json = serde_json::json!({"requirements": [x], "token": x, x.clone(): x});
                requests.push(request(
                    name,
                    Some(&alice),
                    Some(("application/json", json.to_string())),
                ));
                let mut req = request(name, Some(&alice), None);
                for h in ["host", "x-forwarded-proto", "x-request-id"] {
                    req.headers_mut().insert(h, x.parse().unwrap());
                }
                requests.push(req);
            }
            for req in requests {
                answers.extend(functions.call(name, req).await);
            }
            objects.push_str(&serde_json::to_string(&stack.cluster.objects()).unwrap());
        }
        let served: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
        assert!(
            served.contains(&201) && served.contains(&400) && served.contains(&401),
            "{served:?}"
        );
        assert!(served.iter().all(|s| *s < 500), "no route failed: {served:?}");

        assert!(objects.contains("rexec-server"), "the spawn wrote its objects");
        let logged = logs.text();
        assert!(
            logged.lines().count() > 100 && logged.contains("TRACE"),
            "trace lines were captured"
        );
        let answered: String = answers.iter().map(text).collect();
        let secret_part = alice.split_once('.').unwrap().1;
        for (what, haystack) in [
            ("an answer", &answered),
            ("a log line", &logged),
            ("a Kubernetes object", &objects),
        ] {
            assert!(!haystack.contains(&canary), "the canary leaked into {what}");
            assert!(!haystack.contains(secret_part), "a valid token leaked into {what}");
            assert!(!haystack.contains(&forged), "a refused token leaked into {what}");
        }
    });
}
