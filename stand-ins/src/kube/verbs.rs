//! The API's verbs on the store: create, replace (optimistic concurrency), JSON merge patch,
//! server-side apply and delete (preconditions, namespaces that terminate, pods that stop);
//! lists with label and field selectors. Names are checked with the API server's own DNS-1123
//! rules; a creation passes the quota's admission first, and time moves the simulated kubelet
//! on ([`settle`]) before every request.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::kubelet::{self, Behaviour, add_event};
use super::quota;
use super::status::{Target, conflict, kind_of, not_found, object_response, status, status_success};
use super::store::{Key, Pod, Selector, Store, key, timestamp};

/// Brings the cluster to now: the kubelet's work, then the quota controller's.
pub(super) fn settle(store: &mut Store, behaviour: &Behaviour) {
    kubelet::advance(store, behaviour);
    quota::refresh(store);
}

/// RFC 1123 label, as the API server checks names: at most 63 lowercase alphanumerics or `-`,
/// alphanumeric at both ends (its own rule, not the code under test's).
fn is_dns_label(s: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Creates `object` as `POST` does (and an apply of an absent object): the name checked, the
/// namespace present and not terminating, no object of that name yet.
pub(super) fn create(store: &mut Store, target: &Target, behaviour: &Behaviour, mut object: Value) -> Response {
    let (api_version, kind, namespaced) = kind_of(&target.resource).expect("served resources only");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let valid = if target.resource == "namespaces" {
        is_dns_label(&name)
    } else {
        is_dns_subdomain(&name)
    };
    if !valid {
        return status(
            422,
            "Invalid",
            format!(
                "{kind} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'"
            ),
            json!({"name": name, "kind": kind, "causes": [{"reason": "FieldValueInvalid", "field": "metadata.name"}]}),
        );
    }
    if namespaced {
        match store
            .objects
            .get(&("namespaces".into(), String::new(), target.namespace.clone()))
        {
            None => return not_found("namespaces", &target.namespace),
            Some(_) if store.terminating.contains_key(&target.namespace) => {
                return status(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                        target.resource, target.namespace
                    ),
                    json!({"name": name, "kind": target.resource, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {} is being terminated", target.namespace), "field": "metadata.namespace"}]}),
                );
            }
            Some(_) => {}
        }
    }
    if store.objects.contains_key(&key(target, &name)) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", target.resource),
            json!({"name": name, "kind": target.resource}),
        );
    }
    if let Some(refusal) = quota::refusal(store, target, &name, &object) {
        return refusal;
    }
    let meta = &mut object["metadata"];
    meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = json!(timestamp(SystemTime::now()));
    if namespaced {
        meta["namespace"] = json!(target.namespace);
    }
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    match target.resource.as_str() {
        "namespaces" => object["status"] = json!({"phase": "Active"}),
        "jobs" => {
            object["status"] = json!({"startTime": timestamp(SystemTime::now()), "active": 1});
            store
                .jobs
                .insert(key(target, &name), (Instant::now(), behaviour.pod_outcome));
        }
        "persistentvolumeclaims" => {
            object["status"] = json!({"phase": "Bound", "accessModes": object["spec"]["accessModes"]})
        }
        "pods" => {
            object["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]});
            store.pods.insert(
                (target.namespace.clone(), name.clone()),
                Pod {
                    created: Instant::now(),
                    outcome: behaviour.pod_outcome,
                    images: ["initContainers", "containers"]
                        .iter()
                        .flat_map(|list| object["spec"][list].as_array().cloned().unwrap_or_default())
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().to_owned(),
                                c["image"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                    logs: HashMap::new(),
                    init: object["spec"]["initContainers"][0]["name"]
                        .as_str()
                        .unwrap_or("init")
                        .to_owned(),
                    deleted: None,
                    shown: "Pending",
                },
            );
            add_event(
                store,
                &target.namespace,
                &name,
                "Normal",
                "Scheduled",
                format!("Successfully assigned {}/{name} to node-1", target.namespace),
            );
        }
        _ => {}
    }
    store.insert_new(key(target, &name), object);
    // What the quota controller writes a moment later, written at once.
    quota::refresh(store);
    object_response(StatusCode::CREATED, &store.objects[&key(target, &name)])
}

/// `PUT`: replaces the object; a `resourceVersion` sent must be the current one.
pub(super) fn replace(store: &mut Store, target: &Target, name: &str, body: &[u8]) -> Response {
    let (api_version, kind, _) = kind_of(&target.resource).expect("served resources only");
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not a JSON object".into(), json!({}));
    };
    let Some(current) = store.objects.get(&key(target, name)).cloned() else {
        return not_found(&target.resource, name);
    };
    if let Some(sent) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && Some(sent) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return conflict(&target.resource, name);
    }
    store.version += 1;
    for field in ["uid", "creationTimestamp", "namespace"] {
        object["metadata"][field] = current["metadata"][field].clone();
    }
    object["metadata"]["resourceVersion"] = json!(store.version.to_string());
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    if target.resource == "pods" || target.resource == "namespaces" {
        object["status"] = current["status"].clone();
    }
    store.objects.insert(key(target, name), object.clone());
    object_response(StatusCode::OK, &object)
}

/// `PATCH`: JSON merge patch, or server-side apply.
pub(super) fn patch(
    store: &mut Store,
    target: &Target,
    behaviour: &Behaviour,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    name: &str,
    body: &[u8],
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let apply = content_type.starts_with("application/apply-patch+yaml");
    if !apply && !content_type.starts_with("application/merge-patch+json") {
        return status(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
            json!({}),
        );
    }
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON".into(), json!({}));
    };
    if apply {
        return server_side_apply(store, target, behaviour, query, name, patch);
    }
    let Some(mut object) = store.objects.get(&key(target, name)).cloned() else {
        return not_found(&target.resource, name);
    };
    if let Some(sent) = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && Some(sent) != object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return conflict(&target.resource, name);
    }
    merge(&mut object, &patch);
    store.version += 1;
    object["metadata"]["resourceVersion"] = json!(store.version.to_string());
    store.objects.insert(key(target, name), object.clone());
    object_response(StatusCode::OK, &object)
}

/// `DELETE`: preconditions checked; a namespace turns `Terminating`, a pod stops, anything
/// else goes at once.
pub(super) fn delete(store: &mut Store, target: &Target, name: &str, body: &[u8]) -> Response {
    let name = name.to_owned();
    let Some(mut object) = store.objects.get(&key(target, &name)).cloned() else {
        return not_found(&target.resource, &name);
    };
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    for (field, meta) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let wanted = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str);
        let actual = object["metadata"][field].as_str().unwrap_or_default();
        if let Some(wanted) = wanted
            && wanted != actual
        {
            return status(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {meta} in precondition: {wanted}, {meta} in object meta: {actual}",
                    target.resource
                ),
                json!({"name": name, "kind": target.resource}),
            );
        }
    }
    match target.resource.as_str() {
        "namespaces" => {
            if store.terminating.contains_key(&name) {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on namespaces \"{name}\": The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."
                    ),
                    json!({"name": name, "kind": "namespaces"}),
                );
            }
            store.terminating.insert(name.clone(), Instant::now());
            store.version += 1;
            object["metadata"]["deletionTimestamp"] = json!(timestamp(SystemTime::now()));
            object["metadata"]["resourceVersion"] = json!(store.version.to_string());
            object["status"] = json!({"phase": "Terminating"});
            store.objects.insert(key(target, &name), object.clone());
            object_response(StatusCode::OK, &object)
        }
        // A pod the kubelet runs stops first; one never bound to a node goes at once, as the
        // API server deletes an unscheduled pod without a grace period.
        "pods" if store.pods.contains_key(&(target.namespace.clone(), name.clone())) => {
            if let Some(pod) = store.pods.get_mut(&(target.namespace.clone(), name.clone()))
                && pod.deleted.is_none()
            {
                pod.deleted = Some(Instant::now());
            }
            store.version += 1;
            if object["metadata"].get("deletionTimestamp").is_none() {
                object["metadata"]["deletionTimestamp"] = json!(timestamp(SystemTime::now()));
            }
            object["metadata"]["resourceVersion"] = json!(store.version.to_string());
            store.objects.insert(key(target, &name), object.clone());
            add_event(
                store,
                &target.namespace,
                &name,
                "Normal",
                "Killing",
                "Stopping container server".into(),
            );
            object_response(StatusCode::OK, &object)
        }
        _ => {
            store.remove(&key(target, &name));
            status_success(&target.resource, &name)
        }
    }
}

/// Server-side apply (`application/apply-patch+yaml`): a `fieldManager` is required, the body
/// names the object of the URL; an absent object is created (201), a present one takes the
/// applied fields (maps merge, lists replace), loses those its manager applied before and no
/// longer applies, and keeps its `resourceVersion` when nothing changed.
fn server_side_apply(
    store: &mut Store,
    target: &Target,
    behaviour: &Behaviour,
    query: &HashMap<String, String>,
    name: &str,
    applied: Value,
) -> Response {
    if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return status(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                .into(),
            json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "field": "fieldManager"}]}),
        );
    }
    let named = applied.pointer("/metadata/name").and_then(Value::as_str);
    if named != Some(name) {
        return status(
            400,
            "BadRequest",
            format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                named.unwrap_or_default()
            ),
            json!({}),
        );
    }
    let manager = query["fieldManager"].clone();
    let Some(current) = store.objects.get(&key(target, name)).cloned() else {
        let response = create(store, target, behaviour, applied.clone());
        if response.status().is_success() {
            store
                .applied
                .entry(key(target, name))
                .or_default()
                .insert(manager, applied);
        }
        return response;
    };
    let mut object = current.clone();
    let before = store.applied.entry(key(target, name)).or_default();
    if let Some(before) = before.get(&manager) {
        drop_omitted(&mut object, before, &applied);
    }
    merge(&mut object, &applied);
    before.insert(manager, applied);
    if object != current {
        store.version += 1;
        object["metadata"]["resourceVersion"] = json!(store.version.to_string());
        store.objects.insert(key(target, name), object.clone());
    }
    object_response(StatusCode::OK, &object)
}

pub(super) fn list(
    store: &Store,
    target: &Target,
    query: &HashMap<String, String>,
    api_version: &str,
    kind: &str,
) -> Response {
    let selector = match Selector::from_query(query) {
        Ok(selector) => selector,
        Err(message) => return status(400, "BadRequest", message, json!({})),
    };
    // A page starts after the key its `continue` token names; the token is opaque to clients.
    let after: Option<Key> = match query.get("continue").filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|raw| serde_json::from_slice::<Key>(&raw).ok())
        {
            Some(key) => Some(key),
            None => {
                return status(
                    400,
                    "BadRequest",
                    "continue key is not valid: illegal base64 data".into(),
                    json!({}),
                );
            }
        },
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0);
    let mut selected = store
        .objects
        .iter()
        .filter(|(key, _)| after.as_ref().is_none_or(|after| *key > after))
        .filter(|(key, object)| selector.selects(target, key, object));
    let page: Vec<(&Key, &Value)> = selected.by_ref().take(limit.unwrap_or(usize::MAX)).collect();
    let remaining = selected.count();
    let mut metadata = json!({"resourceVersion": store.version.to_string()});
    if remaining > 0
        && let Some((last, _)) = page.last()
    {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(last).unwrap());
        metadata["continue"] = json!(token);
        // As the API server: counted for an unfiltered list only.
        if !selector.filters() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items: Vec<Value> = page.into_iter().map(|(_, object)| object.clone()).collect();
    let body = json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": metadata, "items": items});
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Removes from `object` the fields `before` set and `after` does not (maps field by field,
/// anything else whole), as server-side apply does for one manager's fields.
fn drop_omitted(object: &mut Value, before: &Value, after: &Value) {
    let (Some(object), Some(before)) = (object.as_object_mut(), before.as_object()) else {
        return;
    };
    for (field, was) in before {
        match after.get(field) {
            None => {
                object.remove(field);
            }
            Some(now) if was.is_object() && now.is_object() => {
                if let Some(inner) = object.get_mut(field) {
                    drop_omitted(inner, was, now);
                }
            }
            Some(_) => {}
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}
