//! The object store: objects by resource, namespace and name with `uid`, `creationTimestamp`
//! and a cluster-wide `resourceVersion`, and what the simulated kubelet keeps of each pod.
//! Removed objects leave a tombstone, so that a watch can announce them. Label and field
//! selectors are read here; the API's verbs on the store are in [`super::verbs`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::status::Target;

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
    pub(super) jobs: HashMap<Key, (Instant, PodOutcome)>,
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

/// How a pod created from now on behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOutcome {
    /// Init containers finish, the server runs and is Ready.
    Ready,
    /// The image cannot be pulled (`ErrImagePull`, then `ImagePullBackOff`).
    ImagePullError,
    /// The environment's build fails: its Job fails, and the server's first init container
    /// (the wait for the build) exits 1 with the installer's lines and backs off.
    InstallFails,
    /// The server container exits 1 and backs off (`CrashLoopBackOff`).
    CrashLoop,
    /// The server container is killed for memory (`OOMKilled`).
    OutOfMemory,
}

pub(super) struct Pod {
    pub(super) created: Instant,
    pub(super) outcome: PodOutcome,
    /// The image of each container, by name, as container statuses report it.
    pub(super) images: HashMap<String, String>,
    /// The pod's first init container (the server's waits for its environment's build).
    pub(super) init: String,
    /// What each container printed, by name (see [`super::KubeStandIn::write_log`]).
    pub(super) logs: HashMap<String, String>,
    pub(super) deleted: Option<Instant>,
    /// The last status written, so each change is written (and announced by an Event) once.
    pub(super) shown: &'static str,
}

pub(super) fn key(target: &Target, name: &str) -> Key {
    (target.resource.clone(), target.namespace.clone(), name.to_owned())
}

pub(super) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
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
