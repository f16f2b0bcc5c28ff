//! Metrics in CloudWatch's embedded metric format (EMF): JSON log lines that CloudWatch Logs
//! turns into metrics, with no call to CloudWatch and no agent.
//!
//! What an invocation measures is recorded into its own [`Recorder`] (a task-local, set up by
//! [`scope`]: per request in `http::serve::respond`, per run in the reaper) and written once, at
//! the end, as few lines as EMF allows: one per dimension value, at most 100 values of a metric
//! per line. Code that records outside a scope (a unit test) records nothing.
//!
//! The lines go through the functions' log subscriber with the target [`TARGET`], which writes
//! them as they are, not as a log line. The namespace is `REXEC_METRICS_NAMESPACE` (default
//! `RexecLambda`; the template sets `RexecLambda/<stack>`), read at a function's init.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::config::{ConfigError, Vars};

/// The log target of the metric lines.
pub const TARGET: &str = "rexec_metrics";
/// The most values of one metric EMF takes in one line.
const MAX_VALUES: usize = 100;

/// Every metric the functions write, with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// A spawn's answer, by `Outcome` (created, reused, replaced, failed, refused, error).
    Spawns,
    /// Spawns answered 202: the server was not ready when the spawn's wait ended.
    SpawnsPending,
    /// A created or replaced server's time from the spawn's arrival to ready, when the spawn
    /// answered with it ready.
    TimeToReady,
    /// A new server's environment was built already (hit) or is built for it (miss).
    EnvironmentCacheHits,
    EnvironmentCacheMisses,
    /// A token's identity taken from the cache, or asked of the provider.
    IdentityCacheHits,
    IdentityCacheMisses,
    /// One validation by the identity provider (an identity-service call, an introspection,
    /// a signature check with the issuer's keys).
    IdentityLatency,
    /// The identity provider could not be reached or failed.
    IdentityUnavailable,
    /// One call to the Kubernetes API server.
    ClusterLatency,
    /// The servers a reaper run saw with a pod, ready or on their way.
    ServersRunning,
    /// What a reaper run removed (or recorded), by `Action`.
    Reaped,
    /// The servers a reaper run kept although they lost their readiness: the cause looked
    /// common (the broker), not theirs.
    ReaperHeld,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Self::Spawns => "Spawns",
            Self::SpawnsPending => "SpawnsPending",
            Self::TimeToReady => "TimeToReady",
            Self::EnvironmentCacheHits => "EnvironmentCacheHits",
            Self::EnvironmentCacheMisses => "EnvironmentCacheMisses",
            Self::IdentityCacheHits => "IdentityCacheHits",
            Self::IdentityCacheMisses => "IdentityCacheMisses",
            Self::IdentityLatency => "IdentityLatency",
            Self::IdentityUnavailable => "IdentityUnavailable",
            Self::ClusterLatency => "ClusterLatency",
            Self::ServersRunning => "ServersRunning",
            Self::ReaperHeld => "ReaperHeld",
            Self::Reaped => "Reaped",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::TimeToReady | Self::IdentityLatency | Self::ClusterLatency => "Milliseconds",
            _ => "Count",
        }
    }
}

/// A dimension of a metric: its name and value.
type Dimension = (&'static str, String);

/// What one invocation measured, by dimension then metric.
#[derive(Debug, Default)]
pub struct Recorder {
    values: BTreeMap<Option<Dimension>, BTreeMap<Metric, Vec<f64>>>,
}

tokio::task_local! {
    static RECORDER: RefCell<Recorder>;
}

/// Runs `future` with a recorder of its own, then writes what it recorded.
pub async fn scope<F: Future>(future: F) -> F::Output {
    let (output, recorder) = RECORDER
        .scope(RefCell::new(Recorder::default()), async {
            let output = future.await;
            (output, RECORDER.with(|r| r.take()))
        })
        .await;
    recorder.write(namespace(), SystemTime::now());
    output
}

/// Records `value`: counts are summed into one value, times kept one by one.
fn record(dimension: Option<Dimension>, metric: Metric, value: f64) {
    let _ = RECORDER.try_with(|r| {
        let mut recorder = r.borrow_mut();
        let values = recorder.values.entry(dimension).or_default().entry(metric).or_default();
        match (metric.unit(), values.first_mut()) {
            ("Count", Some(sum)) => *sum += value,
            _ => values.push(value),
        }
    });
}

/// Adds one to `metric`.
pub fn count(metric: Metric) {
    record(None, metric, 1.0);
}

/// Adds `n` to `metric` under the dimension `name` = `value`.
pub fn count_by(metric: Metric, name: &'static str, value: &str, n: f64) {
    record(Some((name, value.to_owned())), metric, n);
}

/// Records a time in milliseconds.
pub fn time(metric: Metric, elapsed: Duration) {
    record(None, metric, elapsed.as_secs_f64() * 1000.0);
}

/// Records `n` of `metric`: a gauge, such as the servers running, recorded once per scope.
pub fn gauge(metric: Metric, n: f64) {
    record(None, metric, n);
}

/// The namespace of the metrics, set once by [`init`].
static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Reads `REXEC_METRICS_NAMESPACE` (default `RexecLambda`): 1 to 255 letters, digits and
/// `.-_/#: `, as CloudWatch takes them.
pub fn init(vars: &Vars) -> Result<(), ConfigError> {
    let _ = NAMESPACE.set(namespace_of(vars)?);
    Ok(())
}

fn namespace_of(vars: &Vars) -> Result<String, ConfigError> {
    let namespace = vars.get("REXEC_METRICS_NAMESPACE").unwrap_or("RexecLambda");
    let valid = !namespace.is_empty()
        && namespace.len() <= 255
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c));
    if !valid {
        return Err(ConfigError::new(
            "REXEC_METRICS_NAMESPACE",
            "must be 1 to 255 letters, digits and . - _ / # : or spaces",
        ));
    }
    Ok(namespace.to_owned())
}

fn namespace() -> &'static str {
    NAMESPACE.get().map_or("RexecLambda", String::as_str)
}

impl Recorder {
    /// The EMF documents of what was recorded, at `at`.
    pub fn documents(&self, namespace: &str, at: SystemTime) -> Vec<Value> {
        let timestamp = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let mut documents = Vec::new();
        for (dimension, metrics) in &self.values {
            let longest = metrics.values().map(Vec::len).max().unwrap_or(0);
            for start in (0..longest).step_by(MAX_VALUES) {
                let mut document = Map::new();
                let mut declared = Vec::new();
                for (metric, values) in metrics {
                    let chunk = values.get(start..).unwrap_or_default();
                    let chunk = &chunk[..chunk.len().min(MAX_VALUES)];
                    if chunk.is_empty() {
                        continue;
                    }
                    declared.push(json!({"Name": metric.name(), "Unit": metric.unit()}));
                    let value = match chunk {
                        [one] => json!(one),
                        many => json!(many),
                    };
                    document.insert(metric.name().into(), value);
                }
                let dimensions: Vec<&str> = dimension.iter().map(|(name, _)| *name).collect();
                if let Some((name, value)) = dimension {
                    document.insert((*name).into(), json!(value));
                }
                document.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp,
                        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [dimensions], "Metrics": declared}],
                    }),
                );
                documents.push(Value::Object(document));
            }
        }
        documents
    }

    fn write(&self, namespace: &str, at: SystemTime) {
        for document in self.documents(namespace, at) {
            tracing::info!(target: TARGET, emf = %document);
        }
    }
}

/// Times a future, recording its time as `metric` when it completes, in the task that polls it
/// (a Kubernetes call is started in the client's buffer worker and awaited by the caller).
pub struct Timed<F> {
    future: Pin<Box<F>>,
    started: Instant,
    metric: Metric,
}

impl<F> Timed<F> {
    pub fn new(future: F, metric: Metric) -> Self {
        Self {
            future: Box::pin(future),
            started: Instant::now(),
            metric,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let ready = self.future.as_mut().poll(cx);
        if ready.is_ready() {
            time(self.metric, self.started.elapsed());
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_per_dimension_value_and_at_most_100_values_a_metric() {
        let mut recorder = Recorder::default();
        recorder
            .values
            .entry(None)
            .or_default()
            .insert(Metric::ClusterLatency, vec![1.5; 250]);
        recorder
            .values
            .entry(None)
            .or_default()
            .insert(Metric::IdentityCacheHits, vec![1.0]);
        for outcome in ["created", "refused"] {
            recorder
                .values
                .entry(Some(("Outcome", outcome.into())))
                .or_default()
                .insert(Metric::Spawns, vec![1.0]);
        }
        let at = UNIX_EPOCH + Duration::from_millis(1_795_380_347_651);
        let documents = recorder.documents("RexecLambda/test", at);
        assert_eq!(documents.len(), 5, "{documents:#?}");
        let first = &documents[0];
        assert_eq!(first["_aws"]["Timestamp"], 1_795_380_347_651u64);
        let directive = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "RexecLambda/test");
        assert_eq!(directive["Dimensions"], json!([[]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "IdentityCacheHits", "Unit": "Count"}, {"Name": "ClusterLatency", "Unit": "Milliseconds"}])
        );
        assert_eq!(first["ClusterLatency"].as_array().unwrap().len(), 100);
        assert_eq!(first["IdentityCacheHits"], 1.0);
        assert_eq!(documents[2]["ClusterLatency"].as_array().unwrap().len(), 50);
        assert!(documents[2].get("IdentityCacheHits").is_none());
        let created = &documents[3];
        assert_eq!(created["Outcome"], "created");
        assert_eq!(
            created["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Outcome"]])
        );
        assert_eq!(created["Spawns"], 1.0);
        assert_eq!(documents[4]["Outcome"], "refused");
    }

    #[test]
    fn a_bad_namespace_names_the_variable() {
        for bad in ["a\nb", "{x}", &"n".repeat(256)] {
            let err = namespace_of(&Vars::from_pairs([("REXEC_METRICS_NAMESPACE", bad)])).unwrap_err();
            assert_eq!(err.variable, "REXEC_METRICS_NAMESPACE");
        }
        let ok = Vars::from_pairs([("REXEC_METRICS_NAMESPACE", "RexecLambda/prod-1")]);
        assert_eq!(namespace_of(&ok).unwrap(), "RexecLambda/prod-1");
        assert_eq!(namespace_of(&Vars::default()).unwrap(), "RexecLambda");
    }

    #[tokio::test]
    async fn a_scope_records_what_its_task_measures_and_nothing_leaks_out() {
        count(Metric::Spawns);
        let seen = RECORDER
            .scope(RefCell::new(Recorder::default()), async {
                count(Metric::IdentityCacheHits);
                count(Metric::IdentityCacheHits);
                Timed::new(
                    async { tokio::time::sleep(Duration::from_millis(5)).await },
                    Metric::ClusterLatency,
                )
                .await;
                RECORDER.with(|r| r.take())
            })
            .await;
        let metrics = &seen.values[&None];
        assert_eq!(metrics[&Metric::IdentityCacheHits], [2.0], "counts are summed");
        assert!(metrics[&Metric::ClusterLatency][0] >= 5.0);
        assert!(!metrics.contains_key(&Metric::Spawns), "recorded outside the scope");
    }
}
