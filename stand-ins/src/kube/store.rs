//! The object store: objects by resource, namespace and name with `uid`, `creationTimestamp`
//! and a cluster-wide `resourceVersion`; create, replace (optimistic concurrency), JSON merge
//! patch, server-side apply and delete (preconditions, namespaces that terminate, pods that
//! stop); lists with label and field selectors. Names are checked with the API server's own
//! DNS-1123 rules. Removed objects leave a tombstone, so that a watch can announce them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::kubelet::{self, Behaviour, Pod, add_event};
use super::quota;
use super::status::{Target, conflict, kind_of, not_found, object_response, status, status_success};

pub(super) type Key = (String, String, String);

#[derive(Default)]
pub(super) struct Store {
    pub(super) version: u64,
    pub(super) objects: BTreeMap<Key, Value>,
    /// The `resourceVersion` each object was created at: a watch tells ADDED from MODIFIED.
    pub(super) created_at: HashMap<Key, u64>,
    /// Removed objects, with the `resourceVersion` of their removal, oldest first.
    pub(super) tombstones: Vec<(u64, Key, Value)>,
    pub(super) pods: HashMap<(String, String), Pod>,
    /// Jobs not finished yet: when they were created, and how they end.
    pub(super) jobs: HashMap<Key, (Instant, kubelet::PodOutcome)>,
    pub(super) terminating: HashMap<String, Instant>,
    /// The metrics API (`metrics.k8s.io`, as metrics-server serves it) once installed: each
    /// pod's CPU usage, by (namespace, name).
    pub(super) cpu_usage: Option<BTreeMap<(String, String), String>>,
    /// The `resourceVersion` the quotas' usage was counted at: nothing changed since, nothing to
    /// count again.
    pub(super) quotas_counted_at: u64,
    /// What each field manager last applied to each object (server-side apply).
    pub(super) applied: HashMap<Key, HashMap<String, Value>>,
}

impl Store {
    /// Stores a new object at the next `resourceVersion`.
    pub(super) fn insert_new(&mut self, key: Key, mut object: Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.created_at.insert(key.clone(), self.version);
        self.objects.insert(key, object);
    }

    /// Removes an object, leaving its tombstone at the next `resourceVersion`.
    pub(super) fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.created_at.remove(key);
        self.applied.remove(key);
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.tombstones.push((self.version, key.clone(), object.clone()));
        Some(object)
    }
}

/// Brings the cluster to now: the kubelet's work, then the quota controller's.
pub(super) fn settle(store: &mut Store, behaviour: &Behaviour) {
    kubelet::advance(store, behaviour);
    quota::refresh(store);
}

pub(super) fn key(target: &Target, name: &str) -> Key {
    (target.resource.clone(), target.namespace.clone(), name.to_owned())
}

pub(super) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
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

/// A request's label and field selectors.
#[derive(Default)]
pub(super) struct Selector {
    labels: Vec<Term>,
    fields: Vec<Term>,
}

impl Selector {
    /// The selectors of a list or watch request; the message of the 400 the API server gives
    /// one it refuses.
    pub(super) fn from_query(query: &HashMap<String, String>) -> Result<Self, String> {
        let terms = |name: &str, refusal: &str| {
            query
                .get(name)
                .map(|s| parse_selector(s, name == "labelSelector"))
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|reason| format!("{refusal}: {reason}"))
        };
        Ok(Self {
            labels: terms("labelSelector", "unable to parse requirement")?,
            fields: terms("fieldSelector", "invalid field selector")?,
        })
    }

    /// Whether the object at `key` is of the request's resource and namespace and matches.
    /// Whether it filters at all.
    pub(super) fn filters(&self) -> bool {
        !(self.labels.is_empty() && self.fields.is_empty())
    }

    pub(super) fn selects(&self, target: &Target, key: &Key, object: &Value) -> bool {
        let (resource, namespace, _) = key;
        *resource == target.resource
            && (target.namespace.is_empty() || *namespace == target.namespace)
            && self
                .labels
                .iter()
                .all(|term| term.matches(object.pointer("/metadata/labels"), false))
            && self.fields.iter().all(|term| term.matches(Some(object), true))
    }
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

enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    /// `key in (a,b)`: the key is there with one of the values.
    In(String, Vec<String>),
    /// `key notin (a,b)`: the key is absent, or its value is none of them.
    NotIn(String, Vec<String>),
}

impl Term {
    /// Label terms look `key` up in the labels; field terms follow a dotted path.
    fn matches(&self, scope: Option<&Value>, dotted: bool) -> bool {
        let lookup = |key: &str| -> Option<String> {
            let value = if dotted {
                key.split('.').try_fold(scope?, |v, part| v.get(part))?
            } else {
                scope?.get(key)?
            };
            Some(value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()))
        };
        match self {
            Term::Equals(k, v) => lookup(k).as_deref() == Some(v),
            Term::NotEquals(k, v) => lookup(k).as_deref() != Some(v),
            Term::Exists(k) => lookup(k).is_some(),
            Term::Absent(k) => lookup(k).is_none(),
            Term::In(k, values) => lookup(k).is_some_and(|v| values.contains(&v)),
            Term::NotIn(k, values) => lookup(k).is_none_or(|v| !values.contains(&v)),
        }
    }
}

/// The terms of a selector, split at the commas outside parentheses. Set-based terms (`in`,
/// `notin`) are label selectors' only, as on the API server.
fn parse_selector(selector: &str, set_based: bool) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in selector.char_indices().chain([(selector.len(), ',')]) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?,
            ',' if depth == 0 => {
                let term = selector[start..i].trim();
                if !term.is_empty() {
                    terms.push(parse_term(term, set_based)?);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(terms)
}

fn parse_term(term: &str, set_based: bool) -> Result<Term, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("expected a parenthesised set of values in {term:?}"))?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
        if values.iter().any(String::is_empty) {
            return Err(format!(
                "for 'in', 'notin' operators, values set can't be empty in {term:?}"
            ));
        }
        Ok(values)
    };
    let words: Vec<&str> = term.splitn(3, ' ').collect();
    match words.as_slice() {
        [key, "in", rest] if set_based => return Ok(Term::In(key.to_string(), set(rest)?)),
        [key, "notin", rest] if set_based => return Ok(Term::NotIn(key.to_string(), set(rest)?)),
        [_, "in" | "notin", _] => return Err(format!("set-based requirement {term:?} is not allowed here")),
        _ => {}
    }
    if term.contains('(') {
        return Err(format!("unexpected parenthesis in {term:?}"));
    }
    Ok(if let Some((k, v)) = term.split_once("!=") {
        Term::NotEquals(k.trim().into(), v.trim().into())
    } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        Term::Equals(k.trim().into(), v.trim().into())
    } else if let Some(k) = term.strip_prefix('!') {
        Term::Absent(k.into())
    } else {
        Term::Exists(term.into())
    })
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
