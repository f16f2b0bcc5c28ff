//! The API's routes: a request's path read as (group, resource, namespace, name), its token
//! and RBAC checked, faults injected, then the verb served by [`super::store`].

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::auth::{self, Permission};
use super::kubelet::Behaviour;
use super::status::{Target, kind_of, not_found, object_response, status};
use super::store::Store;
use super::{Call, Fault, Shared, kubelet, store, verbs, watch};

fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async { Err::<Bytes, _>(std::io::Error::other("connection dropped")) });
    Response::builder().status(200).body(Body::from_stream(stream)).unwrap()
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        [resource] => ("", *resource, None),
        ["namespaces", ns, resource] => (*ns, *resource, None),
        ["namespaces", ns, resource, name] => (*ns, *resource, Some(*name)),
        // A subresource (`pods/log`) is authorised and served as a resource of its own.
        ["namespaces", ns, resource, name, sub] => {
            return Some(Target {
                resource: format!("{resource}/{sub}"),
                namespace: (*ns).to_owned(),
                name: Some((*name).to_owned()),
                group,
            });
        }
        [resource, name] => ("", *resource, Some(*name)),
        _ => return None,
    };
    Some(Target {
        resource: resource.to_owned(),
        namespace: namespace.to_owned(),
        name: name.map(str::to_owned),
        group,
    })
}

/// The store brought forward to now (pods, Jobs and namespaces as time moved them), locked, and
/// the behaviour it moved with.
fn settled(shared: &Shared) -> (Behaviour, MutexGuard<'_, Store>) {
    let behaviour = *shared.behaviour.lock().unwrap();
    let mut store = shared.store.lock().unwrap();
    verbs::settle(&mut store, &behaviour);
    (behaviour, store)
}

/// Serves one request and records when it came and when its answer began (see
/// [`super::KubeStandIn::round_trips`]).
pub(super) async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).unwrap_or_default();
    let watch = watch::is_watch(&query);
    let target =
        parse_path(request.uri().path()).map(|t| (auth::verb_of(request.method(), t.name.is_some(), watch), t));
    let what = match &target {
        Some((verb, t)) => format!("{verb} {}", t.resource),
        None => "unknown".to_owned(),
    };
    let response = answer(&shared, request, query, target).await;
    shared.calls.lock().unwrap().push(Call {
        what,
        watch,
        started,
        answered: Instant::now(),
    });
    response
}

/// Answers one request for `target` (its RBAC verb, and what its path names): the token
/// checked, RBAC applied, faults injected, then the verb.
async fn answer(
    shared: &Arc<Shared>,
    request: Request,
    query: HashMap<String, String>,
    target: Option<(&'static str, Target)>,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();

    let Some((verb, target)) = target else {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    };
    *shared
        .counters
        .lock()
        .unwrap()
        .entry(format!("{method} {}", target.resource))
        .or_default() += 1;
    let token = auth::bearer(&headers).to_owned();
    // A server-side apply that creates its object needs `create` too, as the API server checks.
    let applies = method == Method::PATCH
        && headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/apply-patch"));
    let creates = applies
        && target.name.as_deref().is_some_and(|name| {
            !shared
                .store
                .lock()
                .unwrap()
                .objects
                .contains_key(&store::key(&target, name))
        });
    let verbs: &[&str] = if creates { &[verb, "create"] } else { &[verb] };
    for verb in verbs {
        let permission: Permission = (target.group.clone(), target.resource.clone(), (*verb).to_owned());
        shared
            .permissions
            .lock()
            .unwrap()
            .entry(token.clone())
            .or_default()
            .insert(permission.clone());
        if let Err(reason) = auth::check_token(&shared.token.lock().unwrap(), &token) {
            return status(401, "Unauthorized", format!("Unauthorized: {reason}"), json!({}));
        }
        if !auth::granted(
            shared.grants.lock().unwrap().as_ref(),
            &token,
            &permission,
            &target.namespace,
        ) {
            return auth::forbidden(&target, verb);
        }
    }
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let hit = faults.iter_mut().position(|rule| {
            rule.method.as_ref().is_none_or(|m| *m == method)
                && rule.resource.as_ref().is_none_or(|r| *r == target.resource)
                && rule.remaining != Some(0)
        });
        hit.map(|i| {
            if let Some(n) = faults[i].remaining.as_mut() {
                *n -= 1;
            }
            faults[i].fault.clone()
        })
    };
    match fault {
        Some(Fault::Latency(wait)) => tokio::time::sleep(wait).await,
        Some(Fault::Status(code)) => {
            return status(
                code,
                "InternalError",
                "Internal error occurred: injected fault".into(),
                json!({}),
            );
        }
        Some(Fault::Drop) => return dropped_connection(),
        Some(Fault::Forbidden) => return auth::forbidden(&target, verb),
        Some(Fault::NoServiceAccountYet) => {
            let namespace = &target.namespace;
            let message = format!(
                "{} {:?} is forbidden: error looking up service account {namespace}/default: serviceaccount \"default\" not found",
                target.resource,
                target.name.clone().unwrap_or_default()
            );
            return status(403, "Forbidden", message, json!({"kind": target.resource}));
        }
        None => {}
    }

    if target.group == "metrics.k8s.io" && method == Method::GET {
        return kubelet::metrics(&settled(shared).1, &target, &query);
    }
    if target.resource == "pods/log" && method == Method::GET {
        return kubelet::log(&settled(shared).1, &target, &query);
    }
    let Some((api_version, kind, namespaced)) = kind_of(&target.resource) else {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    };
    // A namespaced resource is addressed in a namespace (or listed across all of them); a
    // cluster-scoped one never is.
    let scoped = if namespaced {
        !target.namespace.is_empty() || (method == Method::GET && target.name.is_none())
    } else {
        target.namespace.is_empty()
    };
    if !scoped {
        return status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        );
    }
    if verb == "watch" {
        return watch::serve(shared.clone(), target, &query);
    }
    let (behaviour, mut store) = settled(shared);

    match (method.clone(), target.name.clone()) {
        (Method::GET, None) => verbs::list(&store, &target, &query, api_version, kind),
        (Method::GET, Some(name)) => match store.objects.get(&store::key(&target, &name)) {
            Some(object) => object_response(StatusCode::OK, object),
            None => not_found(&target.resource, &name),
        },
        (Method::POST, None) => match serde_json::from_slice::<Value>(&body) {
            Ok(object) => verbs::create(&mut store, &target, &behaviour, object),
            Err(_) => status(400, "BadRequest", "the body is not a JSON object".into(), json!({})),
        },
        (Method::PUT, Some(name)) => verbs::replace(&mut store, &target, &name, &body),
        (Method::PATCH, Some(name)) => verbs::patch(&mut store, &target, &behaviour, &headers, &query, &name, &body),
        (Method::DELETE, Some(name)) => verbs::delete(&mut store, &target, &name, &body),
        _ => status(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method} {path})"),
            json!({}),
        ),
    }
}
