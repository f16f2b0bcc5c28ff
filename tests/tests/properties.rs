//! No input breaks a handler: arbitrary Unicode requirement lines, forms, JSON bodies, raw bytes
//! and headers, with a valid token or without, always get a JSON answer below 500 (a 4xx for
//! everything that is not a valid request), against the real stand-ins.

use http::header;
use lambda_http::{Body, Request, Response};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rexec_shared::http::serve::respond;
use rexec_tests::events::event_with;
use rexec_tests::stack::Stack;
use serde_json::Value;

/// A JSON value of any shape, strings of any Unicode.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("requirements".to_owned()),
                    Just("force_reinstall".to_owned()),
                    any::<String>()
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body and its content type: a form of any fields, JSON of any shape, or raw bytes.
fn body() -> impl Strategy<Value = (Option<&'static str>, Vec<u8>)> {
    let field = prop_oneof![
        Just("requirments".to_owned()),
        Just("requirements".to_owned()),
        Just("force_reinstall".to_owned()),
        Just("token".to_owned()),
        any::<String>(),
    ];
    let line = prop_oneof![
        any::<String>(),
        Just("python==3.11".to_owned()),
        "[a-z]{1,8}([<>=!~]=?[0-9.]{1,5})?".prop_map(|s| s),
        "[ -~]{0,40}",
    ];
    let content_type = prop_oneof![
        Just(Some("application/x-www-form-urlencoded")),
        Just(Some("application/json")),
        Just(Some("text/plain")),
        Just(None),
    ];
    prop_oneof![
        (content_type.clone(), proptest::collection::vec((field, line), 0..8))
            .prop_map(|(ct, pairs)| (ct, serde_urlencoded::to_string(pairs).unwrap().into_bytes())),
        (content_type.clone(), json_value()).prop_map(|(ct, v)| (ct, v.to_string().into_bytes())),
        (content_type.clone(), proptest::collection::vec(any::<String>(), 0..5)).prop_map(|(ct, lines)| {
            (
                ct,
                serde_json::json!({"requirements": lines, "force_reinstall": false})
                    .to_string()
                    .into_bytes(),
            )
        }),
        (content_type, any::<Vec<u8>>()),
    ]
}

fn request(
    name: &str,
    token: Option<&str>,
    authorization: Option<Vec<u8>>,
    (content_type, mut body): (Option<&str>, Vec<u8>),
) -> Request {
    if let Some(token) = token {
        // The valid token as the published clients send it: a form field after the others.
        body.extend_from_slice(format!("&token={token}").as_bytes());
    }
    event_with(name, authorization.as_deref(), Some((content_type, body)))
}

fn check(resp: &Response<Body>) -> Result<(), TestCaseError> {
    prop_assert!(resp.status().as_u16() < 500, "{} {:?}", resp.status(), resp.body());
    prop_assert_eq!(&resp.headers()[header::CONTENT_TYPE], "application/json");
    let body: Value = serde_json::from_slice(resp.body().as_ref()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if resp.status().is_client_error() {
        prop_assert!(body["detail"].is_string() && body["error"].is_string(), "{}", body);
    }
    Ok(())
}

/// The functions driven: every one that reads a token or a body, and get-health (the docs pages
/// answer HTML and read only their path).
const ROUTES: [&str; 6] = [
    "spawn-server",
    "delete-server",
    "get-server",
    "get-broker-config",
    "get-rexec-status",
    "get-health",
];

#[test]
fn any_request_to_any_handler_gets_a_json_answer_below_500() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stack, (spawn, delete, server, broker, rexec_status)) = runtime.block_on(async {
        let stack = Stack::start().await;
        stack.add_broker_service("LoadBalancer");
        let vars = stack.vars(&[]);
        let deps = (
            spawn_server::Deps::from_vars(&vars).unwrap(),
            delete_server::Deps::from_vars(&vars).unwrap(),
            get_server::Deps::from_vars(&vars).unwrap(),
            get_broker_config::Deps::from_vars(&vars).unwrap(),
            get_rexec_status::Deps::from_vars(&vars).unwrap(),
        );
        (stack, deps)
    });
    let alice = stack.identity.issue("alice", None);
    let strategy = (
        0..ROUTES.len(),
        proptest::option::of(Just(())),
        proptest::option::of(prop_oneof![
            any::<Vec<u8>>(),
            "(?i)bearer [ -~]{0,30}".prop_map(String::into_bytes)
        ]),
        body(),
    );
    let statuses = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut runner = TestRunner::new(Config::with_cases(600));
    runner
        .run(&strategy, |(route, with_token, authorization, body)| {
            let token = with_token.map(|()| alice.as_str());
            let req = request(ROUTES[route], token, authorization, body);
            let resp = runtime.block_on(async {
                match ROUTES[route] {
                    "spawn-server" => respond(req, |r| spawn_server::handler(&spawn, r)).await,
                    "delete-server" => respond(req, |r| delete_server::handler(&delete, r)).await,
                    "get-server" => respond(req, |r| get_server::handler(&server, r)).await,
                    "get-broker-config" => respond(req, |r| get_broker_config::handler(&broker, r)).await,
                    "get-rexec-status" => respond(req, |r| get_rexec_status::handler(&rexec_status, r)).await,
                    _ => respond(req, get_health::handler).await,
                }
            });
            statuses.borrow_mut().insert(resp.status().as_u16());
            check(&resp)
        })
        .unwrap();
    let seen = statuses.into_inner();
    for status in [200, 400, 401, 415] {
        assert!(seen.contains(&status), "the inputs reach {status} too: {seen:?}");
    }
}

/// The administrators' routes: any owner and any query, from an administrator or not.
#[test]
fn any_owner_or_query_on_the_administrators_routes_gets_a_json_answer_below_500() {
    use lambda_http::RequestExt;
    use std::collections::HashMap;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stack, (list, server, delete)) = runtime.block_on(async {
        let stack = Stack::start().await;
        let vars = stack.vars(&[("ADMIN_GROUP_NAMES", "/ndp_ep/admins")]);
        let deps = (
            list_servers::Deps::from_vars(&vars).unwrap(),
            get_server::Deps::from_vars(&vars).unwrap(),
            delete_server::Deps::from_vars(&vars).unwrap(),
        );
        (stack, deps)
    });
    let tokens = [stack.identity.issue("bob", None), stack.identity.issue("alice", None)];
    let name = prop_oneof![
        Just("phase".to_owned()),
        Just("limit".to_owned()),
        Just("continue".to_owned()),
        any::<String>()
    ];
    let value = prop_oneof![any::<String>(), "[ -~]{0,12}", Just("ready".to_owned()), "[0-9]{1,4}"];
    let strategy = (
        0..3usize,
        0..2usize,
        any::<String>(),
        proptest::collection::vec((name, value), 0..4),
    );
    let statuses = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(&strategy, |(route, who, owner, query)| {
            let bearer = format!("Bearer {}", tokens[who]);
            let mut params: HashMap<String, Vec<String>> = HashMap::new();
            for (name, value) in query {
                params.entry(name).or_default().push(value);
            }
            let event = ["list-servers", "get-server-of-owner", "delete-server-of-owner"][route];
            let mut req = event_with(event, Some(bearer.as_bytes()), None);
            if route > 0 {
                req = req.with_path_parameters(HashMap::from([("owner".to_owned(), owner)]));
            }
            let req = req.with_query_string_parameters(params);
            let resp = runtime.block_on(async {
                match route {
                    0 => respond(req, |r| list_servers::handler(&list, r)).await,
                    1 => respond(req, |r| get_server::handler(&server, r)).await,
                    _ => respond(req, |r| delete_server::handler(&delete, r)).await,
                }
            });
            statuses.borrow_mut().insert(resp.status().as_u16());
            check(&resp)
        })
        .unwrap();
    let seen = statuses.into_inner();
    for status in [200, 400, 403, 404] {
        assert!(seen.contains(&status), "the inputs reach {status} too: {seen:?}");
    }
}
