//! Watches (`GET …?watch=true`): a stream of `{"type", "object"}` lines, one per change of a
//! selected object, as the API server sends them.
//!
//! - Without `resourceVersion` (or with `0`), the current objects come first as ADDED.
//! - With one, only changes after it: ADDED for an object created after it, MODIFIED for an
//!   update, DELETED (the object as it was last) for a removal.
//! - `timeoutSeconds` ends the stream; so does the watch's default of 30 minutes.
//! - A `resourceVersion` the store has not reached yet is waited for, as etcd waits for a
//!   future revision (the stand-in once answered 410 Expired there, which the real API server
//!   does not); one that is not a number is 400. The stand-in keeps every tombstone, so it never
//!   compacts: a real API server may answer 410 Expired for an old version.
//!
//! Several changes of one object between two looks are sent as its latest state, as a real watch
//! may send them after a compaction; each change is seen within 20 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};

use super::Shared;
use super::status::{Target, status};
use super::store::Selector;
use super::verbs;

const LOOK_EVERY: Duration = Duration::from_millis(20);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Whether the query asks for a watch.
pub(super) fn is_watch(query: &HashMap<String, String>) -> bool {
    matches!(
        query.get("watch").map(String::as_str),
        Some("1" | "t" | "T" | "true" | "True" | "TRUE")
    )
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Serves a watch of `target`'s resource with the query's selectors.
pub(super) fn serve(shared: Arc<Shared>, target: Target, query: &HashMap<String, String>) -> Response {
    let selector = match Selector::from_query(query) {
        Ok(selector) => selector,
        Err(message) => return status(400, "BadRequest", message, json!({})),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let since: Option<u64> = match query.get("resourceVersion").filter(|v| !v.is_empty() && *v != "0") {
        None => None,
        Some(version) => match version.parse() {
            Ok(version) => Some(version),
            Err(_) => {
                return status(
                    400,
                    "BadRequest",
                    format!("invalid resource version: {version:?}"),
                    json!({}),
                );
            }
        },
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cursor = match since {
            Some(version) => version,
            None => {
                let (current, version) = {
                    let mut store = shared.store.lock().unwrap();
                    let behaviour = *shared.behaviour.lock().unwrap();
                    verbs::settle(&mut store, &behaviour);
                    let current: Vec<Bytes> = store
                        .objects
                        .iter()
                        .filter(|(key, object)| selector.selects(&target, key, object))
                        .map(|(_, object)| line("ADDED", object))
                        .collect();
                    (current, store.version)
                };
                for event in current {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                version
            }
        };
        while tokio::time::Instant::now() < deadline {
            let events = {
                let mut store = shared.store.lock().unwrap();
                let behaviour = *shared.behaviour.lock().unwrap();
                verbs::settle(&mut store, &behaviour);
                if cursor > store.version {
                    Vec::new()
                } else {
                    let mut changes: Vec<(u64, Bytes)> = store
                        .objects
                        .iter()
                        .filter(|(key, object)| selector.selects(&target, key, object))
                        .filter_map(|(key, object)| {
                            let version: u64 = object["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
                            let created = store.created_at.get(key).copied().unwrap_or_default();
                            (version > cursor).then(|| {
                                (
                                    version,
                                    line(if created > cursor { "ADDED" } else { "MODIFIED" }, object),
                                )
                            })
                        })
                        .chain(
                            store
                                .tombstones
                                .iter()
                                .filter(|(version, key, object)| {
                                    *version > cursor && selector.selects(&target, key, object)
                                })
                                .map(|(version, _, object)| (*version, line("DELETED", object))),
                        )
                        .collect();
                    changes.sort_by_key(|(version, _)| *version);
                    cursor = store.version;
                    changes.into_iter().map(|(_, event)| event).collect()
                }
            };
            for event in events {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}
