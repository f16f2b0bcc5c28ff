//! The reaper: what a scheduled run removes, and why. Each run lists every caller's claim, every
//! server pod and, when idle servers are reaped, the pods' CPU from the metrics API, all paged;
//! decides for each server with [`decide`], a pure function of the claim, the pod, its CPU and
//! the time; then acts, a few at a time, until the run's deadline. Every decision is logged with
//! its reason, acted on or not (`REXEC_REAPER_DRY_RUN`): those that change a server in the
//! audit trail ([`super::audit`]), the marks of idleness as lines of their own.
//!
//! A server is removed (its claim marked terminated, its pod deleted) when it is:
//! - **failed**: a failure not recorded yet (a failed build, a crash loop, no readiness within
//!   `REXEC_START_TIMEOUT`) is recorded and the pod removed at once, freeing the quota; the
//!   failure stays visible to `GET /rexec/server` for `REXEC_FAILED_RETENTION`, then the server
//!   counts as terminated;
//! - **older than `REXEC_SERVER_MAX_AGE`** (its pod's age; 0, the default, never);
//! - **idle for `REXEC_SERVER_IDLE_TIMEOUT`**: a ready server whose CPU, as the metrics API
//!   reports it (metrics-server's window, about 15 s), stayed at or below
//!   `REXEC_SERVER_IDLE_CPU` at every run since the first run that saw it so. API calls do not
//!   count: a long computation makes none, and a server waiting for calls makes only its
//!   heartbeat. Where the metrics API is not installed, no server is reaped for idleness and
//!   each run says so.
//!
//! A namespace whose server was terminated more than `REXEC_NAMESPACE_RETENTION` ago, or which
//! holds no claim and is older than that, is deleted: its claim first, with its
//! `resourceVersion`, then the namespace, with the one the run listed, which every spawn changes:
//! a spawn that came meanwhile keeps its namespace.
//!
//! Each run also records and removes the environments' finished builds ([`super::builds`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde::Serialize;
use serde_json::json;

use super::audit::{Audit, Event};
use super::broker::BrokerService;
use super::builds::{self, Tidied};
use super::claim::{self, Claim};
use super::environment::{ENVIRONMENT, label};
use super::error::ServerError;
use super::manifests::{self, APP, APP_NAME};
use super::naming::{MANAGED_BY, MANAGER, OWNER, SUB};
use super::settings::EnvironmentSettings;
use super::spawner::{self, Servers, key};
use super::status::{self, Stage};
use crate::cluster::{self, ClusterError, as_read, list_all, quantity};
use crate::config::{ConfigError, Vars};
use crate::metrics::{self, Metric};

/// Objects per page of a list, unless `REXEC_REAPER_PAGE_SIZE` says otherwise.
const PAGE: u32 = cluster::LIST_PAGE;
/// Actions under way at once.
const CONCURRENCY: usize = 8;

/// What the reaper removes, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct ReapPolicy {
    pub idle_timeout: Option<Duration>,
    /// CPU at or below which a server counts as idle, in millicores.
    pub idle_cpu_millis: f64,
    pub max_age: Option<Duration>,
    pub failed_retention: Duration,
    pub namespace_retention: Option<Duration>,
    pub dry_run: bool,
    /// The share of ready servers that may lose their readiness at once before the reaper holds
    /// (`REXEC_REAPER_HOLD_SHARE`): past it, the cause is common (the broker), not theirs.
    pub hold_share: f64,
    /// Objects per page of the run's lists of claims, pods and namespaces
    /// (`REXEC_REAPER_PAGE_SIZE`, 500 by default).
    pub page: u32,
}

impl ReapPolicy {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        // 0 turns a rule off.
        let unless_zero = |d: Duration| Some(d).filter(|d| !d.is_zero());
        let hours = |n: u64| Duration::from_secs(n * 3600);
        let cpu = vars.get("REXEC_SERVER_IDLE_CPU").unwrap_or("10m");
        Ok(Self {
            idle_timeout: unless_zero(vars.seconds_or("REXEC_SERVER_IDLE_TIMEOUT", hours(4))?),
            idle_cpu_millis: quantity::millicores(cpu)
                .ok_or_else(|| ConfigError::new("REXEC_SERVER_IDLE_CPU", "expected a CPU quantity such as 10m"))?,
            max_age: unless_zero(vars.seconds_or("REXEC_SERVER_MAX_AGE", Duration::ZERO)?),
            failed_retention: vars.seconds_or("REXEC_FAILED_RETENTION", hours(24))?,
            namespace_retention: unless_zero(vars.seconds_or("REXEC_NAMESPACE_RETENTION", hours(7 * 24))?),
            dry_run: vars.bool_or("REXEC_REAPER_DRY_RUN", false)?,
            hold_share: vars
                .parse_or("REXEC_REAPER_HOLD_SHARE", 0.2)
                .ok()
                .filter(|share: &f64| (0.0..=1.0).contains(share))
                .ok_or_else(|| {
                    ConfigError::new("REXEC_REAPER_HOLD_SHARE", "expected a share from 0 to 1, such as 0.2")
                })?,
            page: vars
                .parse_or("REXEC_REAPER_PAGE_SIZE", PAGE)
                .ok()
                .filter(|page| (1..=5000).contains(page))
                .ok_or_else(|| ConfigError::new("REXEC_REAPER_PAGE_SIZE", "expected a number from 1 to 5000"))?,
        })
    }
}

/// What the reaper does to one server or namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A failure seen first: recorded, and the pod removed.
    RecordFailure,
    /// A failure recorded longer ago than the retention: the server is terminated.
    RemoveFailed,
    /// Older than the maximum age: terminated.
    Expire,
    /// Idle for the idle timeout: terminated.
    RemoveIdle,
    /// Seen idle for the first time: the claim records since when.
    MarkIdle,
    /// Busy again: the claim's idle mark is removed.
    MarkBusy,
    /// Without a server past the retention: the namespace is deleted.
    RemoveNamespace,
}

/// Named as in the logs (the run's report counts by action).
impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl Action {
    /// The action's name in the logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::RecordFailure => "record_failure",
            Self::RemoveFailed => "remove_failed",
            Self::Expire => "expire",
            Self::RemoveIdle => "remove_idle",
            Self::MarkIdle => "mark_idle",
            Self::MarkBusy => "mark_busy",
            Self::RemoveNamespace => "remove_namespace",
        }
    }

    /// Whether it changes a server's state (an audit event), rather than keeping the reaper's
    /// own record of idleness.
    fn changes_the_server(self) -> bool {
        !matches!(self, Self::MarkIdle | Self::MarkBusy)
    }
}

/// An action and why, in words an operator can read.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub reason: String,
}

impl Decision {
    fn new(action: Action, reason: String) -> Option<Self> {
        Some(Self { action, reason })
    }
}

fn older_than(since: Option<SystemTime>, limit: Duration, now: SystemTime) -> bool {
    since
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age > limit)
}

/// What to do with the server a claim records, with its pod and the pod's CPU (millicores,
/// `None` without the metrics API or a figure for it), at `now`.
pub fn decide(
    claim: &Claim,
    pod: Option<&Pod>,
    cpu: Option<f64>,
    policy: &ReapPolicy,
    start_timeout: Duration,
    now: SystemTime,
) -> Option<Decision> {
    if claim.terminated {
        let retention = policy.namespace_retention?;
        return older_than(claim.terminated_at, retention, now).then(|| Decision {
            action: Action::RemoveNamespace,
            reason: format!(
                "terminated more than {} s ago (REXEC_NAMESPACE_RETENTION)",
                retention.as_secs()
            ),
        });
    }
    let assessment = status::assess_server(claim, pod, &[], start_timeout, now);
    if assessment.stage == Stage::Failed {
        if claim.failure.is_none() {
            return Decision::new(Action::RecordFailure, assessment.reason.unwrap_or_default());
        }
        // A failure recorded without its time predates the time: it is old.
        let failed_at = claim.failed_at.or(Some(SystemTime::UNIX_EPOCH));
        return older_than(failed_at, policy.failed_retention, now).then(|| Decision {
            action: Action::RemoveFailed,
            reason: format!(
                "failed more than {} s ago (REXEC_FAILED_RETENTION): {}",
                policy.failed_retention.as_secs(),
                claim.failure.as_deref().unwrap_or_default()
            ),
        });
    }
    let pod = pod.filter(|_| assessment.stage != Stage::Terminating)?;
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| SystemTime::from(t.0));
    if let Some(max_age) = policy.max_age
        && older_than(created, max_age, now)
    {
        return Decision::new(
            Action::Expire,
            format!("older than {} s (REXEC_SERVER_MAX_AGE)", max_age.as_secs()),
        );
    }
    let (timeout, cpu) = (policy.idle_timeout?, cpu?);
    if assessment.stage != Stage::Ready {
        return None;
    }
    match (cpu <= policy.idle_cpu_millis, claim.idle_since) {
        (true, None) => Decision::new(
            Action::MarkIdle,
            format!("CPU {cpu:.1}m, at most {:.1}m", policy.idle_cpu_millis),
        ),
        (true, Some(_)) if older_than(claim.idle_since, timeout, now) => Decision::new(
            Action::RemoveIdle,
            format!(
                "CPU at most {:.1}m for more than {} s (REXEC_SERVER_IDLE_TIMEOUT)",
                policy.idle_cpu_millis,
                timeout.as_secs()
            ),
        ),
        (false, Some(_)) => Decision::new(Action::MarkBusy, format!("CPU {cpu:.1}m")),
        _ => None,
    }
}

/// Servers that lost their readiness at once, fewer than this, are each one's own failure.
const HOLD_AT_LEAST: usize = 3;

/// Why a run leaves alone the servers that lost their readiness (`lost` of the `ready` ones that
/// were ready), when the cause looks common rather than theirs: the broker's pods are not ready
/// (`broker_ready`, `None` when none was found), or more than `share` of them, and at least
/// three, lost it at once.
pub fn hold(lost: usize, ready: usize, share: f64, broker_ready: Option<bool>) -> Option<String> {
    if lost == 0 {
        return None;
    }
    if broker_ready == Some(false) {
        return Some(format!(
            "the broker's pods are not ready: {lost} server(s) that lost their readiness are kept"
        ));
    }
    (lost >= HOLD_AT_LEAST && lost as f64 > share * ready as f64).then(|| {
        format!(
            "{lost} of {ready} ready servers lost their readiness at once (more than REXEC_REAPER_HOLD_SHARE): kept"
        )
    })
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Claims examined.
    pub servers: usize,
    /// Decisions acted on (or only logged, in a dry run), by action.
    pub done: HashMap<Action, usize>,
    /// Decisions not acted on: the run's deadline came, or the object changed meanwhile.
    pub left: usize,
    pub dry_run: bool,
    /// Whether the metrics API answered (idle servers are reaped only then).
    pub metrics_api: bool,
    /// What the run did to the environments' namespace (see [`builds`]).
    pub environments: Tidied,
    /// Why servers that lost their readiness were kept, when they were ([`hold`]).
    pub held: Option<String>,
}

/// A scheduled run's work: [`Servers`] (the cluster and the start timeout) and the policy.
pub struct Reaper {
    servers: Servers,
    policy: ReapPolicy,
    environments: EnvironmentSettings,
    /// The broker's namespace (`REXEC_BROKER_NAMESPACE`) and its pods' label selector
    /// (`REXEC_BROKER_POD_SELECTOR`).
    broker: (String, String),
}

impl Reaper {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            servers: Servers::from_vars(vars)?,
            policy: ReapPolicy::from_vars(vars)?,
            environments: EnvironmentSettings::from_vars(vars)?,
            broker: (
                BrokerService::from_vars(vars)?.namespace,
                vars.get("REXEC_BROKER_POD_SELECTOR")
                    .unwrap_or("app=rexec-broker")
                    .to_owned(),
            ),
        })
    }

    /// Whether the broker's pods are ready (any of them), `None` when none is found.
    async fn broker_ready(&self, client: &Client) -> Result<Option<bool>, ClusterError> {
        let (namespace, selector) = &self.broker;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let found = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(ClusterError::from)?;
        Ok((!found.items.is_empty()).then(|| found.items.iter().any(status::ready)))
    }

    /// Each running server pod's CPU in millicores, or `None` where the metrics API is not
    /// installed.
    async fn cpu(&self, client: &Client) -> Result<Option<HashMap<(String, String), f64>>, ClusterError> {
        let resource = ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let metrics = match api
            .list(&ListParams::default().labels(&format!("{APP}={APP_NAME}")))
            .await
        {
            Ok(list) => list.items,
            Err(err) => match ClusterError::from(err) {
                ClusterError::NotFound => return Ok(None),
                other => return Err(other),
            },
        };
        Ok(Some(
            metrics
                .iter()
                .map(|m| {
                    let total = m.data["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| quantity::millicores(c["usage"]["cpu"].as_str()?))
                        .sum();
                    (key(m), total)
                })
                .collect(),
        ))
    }

    /// One run: what the cluster holds is listed, decided on by [`plan`], and the plan
    /// carried out until `deadline` (unless a dry run); then the finished builds are tidied.
    pub async fn run(&self, now: SystemTime, deadline: Instant) -> Result<Report, ServerError> {
        let client = self.servers.cluster.client().await?;
        let listing = self.list(&client).await?;
        if self.policy.idle_timeout.is_some() && listing.cpu.is_none() {
            tracing::warn!("the metrics API (metrics.k8s.io) is not installed: no server is reaped for idleness");
        }
        let plan = plan(&listing, &self.policy, self.servers.start_timeout, now);
        if let Some(why) = &plan.held {
            tracing::warn!(reason = %why, "the reaper holds: no server is removed for lost readiness");
            metrics::gauge(Metric::ReaperHeld, plan.lost as f64);
        }
        metrics::gauge(Metric::ServersRunning, plan.running as f64);
        let mut report = Report {
            held: plan.held,
            servers: listing.claims.len(),
            dry_run: self.policy.dry_run,
            metrics_api: listing.cpu.is_some(),
            ..Report::default()
        };
        for (action, outcome) in self.carry_out(&client, plan.work, now, deadline).await {
            match outcome {
                Outcome::Done | Outcome::DryRun => *report.done.entry(action).or_default() += 1,
                _ => report.left += 1,
            }
            if matches!(outcome, Outcome::Done) && action.changes_the_server() {
                metrics::count_by(Metric::Reaped, "Action", action.name(), 1.0);
            }
        }
        let in_use: HashSet<String> = listing
            .pods
            .values()
            .filter_map(|pod| label(&pod.metadata, ENVIRONMENT).map(str::to_owned))
            .collect();
        match builds::tidy(&client, &self.environments, &in_use, self.policy.dry_run, now).await {
            Ok(tidied) => report.environments = tidied,
            Err(err) => tracing::error!(error = %err, "the finished builds could not be tidied"),
        }
        Ok(report)
    }

    /// What the cluster holds of the service's servers, a page at a time, all read at once.
    async fn list(&self, client: &Client) -> Result<Listing, ServerError> {
        let page = self.policy.page;
        let (claims, pods, namespaces, cpu, broker_ready) = tokio::try_join!(
            list_all(
                Api::<ConfigMap>::all(client.clone()),
                ListParams::default()
                    .labels(&format!("{MANAGED_BY}={MANAGER}"))
                    .fields(&format!("metadata.name={}", claim::NAME))
                    .limit(page)
            ),
            list_all(
                Api::<Pod>::all(client.clone()),
                ListParams::default().labels(&format!("{APP}={APP_NAME}")).limit(page)
            ),
            list_all(
                Api::<Namespace>::all(client.clone()),
                ListParams::default()
                    .labels(&format!("{MANAGED_BY}={MANAGER},{OWNER}"))
                    .limit(page)
            ),
            async {
                match self.policy.idle_timeout {
                    Some(_) => self.cpu(client).await,
                    None => Ok(None),
                }
            },
            self.broker_ready(client),
        )?;
        Ok(Listing {
            claims,
            pods: pods.into_iter().map(|p| (key(&p), p)).collect(),
            namespaces,
            cpu,
            broker_ready,
        })
    }

    /// Carries out each piece of work (or not: a dry run, or the run's time is up), at most
    /// [`CONCURRENCY`] at once, each recorded in the audit trail or logged as a mark.
    async fn carry_out(
        &self,
        client: &Client,
        work: Vec<Work>,
        now: SystemTime,
        deadline: Instant,
    ) -> Vec<(Action, Outcome)> {
        stream::iter(work)
            .map(|work| async move {
                let outcome = if self.policy.dry_run {
                    Outcome::DryRun
                } else if Instant::now() >= deadline {
                    Outcome::OutOfTime
                } else {
                    match act(client, &work, now).await {
                        Ok(true) => Outcome::Done,
                        Ok(false) => Outcome::Changed,
                        Err(err) => Outcome::Failed(err.to_string()),
                    }
                };
                record(&work, &outcome);
                (work.decision.action, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }
}

/// What a run read of the cluster.
struct Listing {
    claims: Vec<ConfigMap>,
    pods: HashMap<(String, String), Pod>,
    namespaces: Vec<Namespace>,
    /// Each server pod's CPU in millicores, `None` without the metrics API.
    cpu: Option<HashMap<(String, String), f64>>,
    /// Whether the broker is ready, `None` when none of its pods is found.
    broker_ready: Option<bool>,
}

/// What a run decided.
struct RunPlan {
    work: Vec<Work>,
    /// Why removals for lost readiness are held, if they are.
    held: Option<String>,
    /// Servers whose failure is lost readiness.
    lost: usize,
    /// Servers running: not terminated, not failed, with their pod.
    running: usize,
}

/// The decisions of a run over what it listed: one per server ([`decide`]) and one per
/// namespace without a server past its retention, less the removals for lost readiness when
/// [`hold`] says so.
fn plan(listing: &Listing, policy: &ReapPolicy, start_timeout: Duration, now: SystemTime) -> RunPlan {
    let Listing {
        claims,
        pods,
        namespaces,
        cpu,
        broker_ready,
    } = listing;
    // Namespaces being deleted hold nothing to act on.
    let going: HashSet<String> = namespaces
        .iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_some())
        .map(|ns| key(ns).1)
        .collect();
    let versions: HashMap<String, Option<String>> = namespaces
        .iter()
        .map(|ns| (key(ns).1, ns.metadata.resource_version.clone()))
        .collect();
    let mut work: Vec<Work> = Vec::new();
    let mut claimed = HashSet::new();
    // Servers whose failure is lost readiness, and those that are or were ready.
    let mut lost = HashSet::new();
    let ready = pods
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| status::ready(p) || status::lost_readiness(p))
        .count();
    let mut running = 0;
    for cm in claims {
        let (namespace, _) = key(cm);
        claimed.insert(namespace.clone());
        let Ok(claim) = Claim::read(cm) else { continue };
        let pod_key = (namespace.clone(), manifests::pod_name(claim.generation));
        let pod = pods.get(&pod_key);
        let usage = cpu.as_ref().and_then(|c| c.get(&pod_key).copied());
        running += usize::from(!claim.terminated && claim.failure.is_none() && pod.is_some());
        let decision = decide(&claim, pod, usage, policy, start_timeout, now);
        if let Some(decision) = decision.filter(|_| !going.contains(&namespace)) {
            if decision.action == Action::RecordFailure && pod.is_some_and(status::lost_readiness) {
                lost.insert(namespace.clone());
            }
            work.push(Work {
                version: versions.get(&namespace).cloned().flatten(),
                namespace,
                sub: claim.sub.clone(),
                claim: Some(claim),
                decision,
            });
        }
    }
    if let Some(retention) = policy.namespace_retention {
        let unclaimed = namespaces.iter().filter(|ns| {
            let name = key(*ns).1;
            !claimed.contains(&name) && !going.contains(&name)
        });
        work.extend(unclaimed.filter_map(|ns| past_retention(ns, retention, now)));
    }
    let held = hold(lost.len(), ready, policy.hold_share, *broker_ready);
    if held.is_some() {
        work.retain(|w| !(w.decision.action == Action::RecordFailure && lost.contains(&w.namespace)));
    }
    RunPlan {
        work,
        held,
        lost: lost.len(),
        running,
    }
}

/// The removal of a namespace without a server, once it is older than `retention`.
fn past_retention(ns: &Namespace, retention: Duration, now: SystemTime) -> Option<Work> {
    let created = ns.metadata.creation_timestamp.as_ref().map(|t| SystemTime::from(t.0));
    if !older_than(created, retention, now) {
        return None;
    }
    Some(Work {
        version: ns.metadata.resource_version.clone(),
        namespace: key(ns).1,
        claim: None,
        sub: ns.metadata.annotations.as_ref().and_then(|a| a.get(SUB)).cloned(),
        decision: Decision {
            action: Action::RemoveNamespace,
            reason: format!(
                "no server, older than {} s (REXEC_NAMESPACE_RETENTION)",
                retention.as_secs()
            ),
        },
    })
}

/// A piece of work's outcome, in the audit trail when it changes a server, else in the log.
fn record(work: &Work, outcome: &Outcome) {
    let error = match outcome {
        Outcome::Failed(e) => Some(e.as_str()),
        _ => None,
    };
    let action = work.decision.action.name();
    let owner = work.sub.as_deref().unwrap_or_default();
    if work.decision.action.changes_the_server() {
        Audit {
            event: Event::Reap,
            action: Some(action),
            actor: "reaper",
            owner,
            target: &work.namespace,
            outcome: outcome.words(),
            reason: Some(&work.decision.reason),
        }
        .record();
        if let Some(error) = error {
            tracing::error!(namespace = %work.namespace, error, "the reaper could not act");
        }
    } else {
        tracing::info!(action, namespace = %work.namespace, owner, reason = %work.decision.reason,
            outcome = outcome.words(), error, "reaper mark");
    }
}

/// A decision about one server or namespace.
struct Work {
    namespace: String,
    /// The namespace's `resourceVersion` when the run listed it: its deletion's precondition.
    version: Option<String>,
    claim: Option<Claim>,
    /// The owner, for the log.
    sub: Option<String>,
    decision: Decision,
}

/// What came of a decision.
enum Outcome {
    Done,
    DryRun,
    /// Not started: the run's time was up; the next run finds it again.
    OutOfTime,
    /// The claim changed meanwhile: someone acted first.
    Changed,
    Failed(String),
}

impl Outcome {
    fn words(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::DryRun => "dry run",
            Self::OutOfTime => "left for the next run: the run's time was up",
            Self::Changed => "left: the claim changed meanwhile",
            Self::Failed(_) => "failed",
        }
    }
}

/// Carries out one decision; `false` when the claim changed meanwhile (someone acted first).
async fn act(client: &Client, work: &Work, now: SystemTime) -> Result<bool, ServerError> {
    let (namespace, claim, decision) = (work.namespace.as_str(), work.claim.as_ref(), &work.decision);
    let claims: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let done = match (decision.action, claim) {
        (Action::RecordFailure, Some(c)) => {
            return spawner::record_failure(client, namespace, c, &decision.reason, now).await;
        }
        (Action::RemoveFailed | Action::Expire | Action::RemoveIdle, Some(c)) => {
            spawner::end(client, namespace, c, now).await.map(|_| ())
        }
        (Action::MarkIdle, Some(c)) => {
            spawner::annotate(&claims, c, json!({claim::IDLE_SINCE: spawner::rfc3339(now)})).await
        }
        (Action::MarkBusy, Some(c)) => spawner::annotate(&claims, c, json!({claim::IDLE_SINCE: null})).await,
        (Action::RemoveNamespace, c) => {
            async {
                if let Some(c) = c {
                    claims
                        .delete(claim::NAME, &as_read(c.resource_version.clone()))
                        .await
                        .map_err(ClusterError::from)?;
                }
                // Only as listed: a spawn since changed it (see `manifests::namespace`).
                let namespaces: Api<Namespace> = Api::all(client.clone());
                namespaces
                    .delete(namespace, &as_read(work.version.clone()))
                    .await
                    .map_err(ClusterError::from)?;
                Ok(())
            }
            .await
        }
        (_, None) => return Ok(false),
    };
    match done {
        Ok(()) => Ok(true),
        Err(ServerError::Cluster(ClusterError::Conflict(_) | ClusterError::NotFound)) => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_reaper_holds_for_a_common_cause_only() {
        let broker = "the broker's pods are not ready";
        for (lost, ready, broker_ready, holds) in [
            (0, 10, Some(false), None),
            (1, 10, None, None),
            (2, 2, None, None),
            (3, 15, Some(true), None),
            (3, 14, None, Some("3 of 14")),
            (10, 10, None, Some("10 of 10")),
            (1, 10, Some(false), Some(broker)),
        ] {
            let held = hold(lost, ready, 0.2, broker_ready);
            assert_eq!(
                held.is_some(),
                holds.is_some(),
                "{lost} of {ready}, broker {broker_ready:?}"
            );
            if let (Some(why), Some(start)) = (held, holds) {
                assert!(why.starts_with(start), "{why}");
            }
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> ReapPolicy {
        ReapPolicy::from_vars(&Vars::from_pairs([("REXEC_SERVER_MAX_AGE", "86400")])).unwrap()
    }

    fn claim() -> Claim {
        Claim {
            sub: Some("u-1".into()),
            username: Some("alice".into()),
            digest: "d".into(),
            generation: 1,
            python: "3.11".into(),
            requirements: vec![],
            created: None,
            resource_version: Some("7".into()),
            failure: None,
            failed_at: None,
            terminated: false,
            terminated_at: None,
            idle_since: None,
        }
    }

    /// A pod created at `created`, Ready or not since then.
    fn pod(created: SystemTime, ready: bool) -> Pod {
        pod_changed(created, ready, created)
    }

    /// A pod created at `created`, Ready or not since `changed`.
    fn pod_changed(created: SystemTime, ready: bool, changed: SystemTime) -> Pod {
        let at = |t| humantime::format_rfc3339_seconds(t).to_string();
        let state = if ready { "True" } else { "False" };
        serde_json::from_value(json!({"metadata": {"name": "rexec-server-1", "creationTimestamp": at(created)},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": state, "lastTransitionTime": at(changed)}],
                "containerStatuses": [{"name": "server", "ready": ready, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}]}}))
        .unwrap()
    }

    fn action(claim: &Claim, pod: Option<&Pod>, cpu: Option<f64>, now: SystemTime) -> Option<Action> {
        decide(claim, pod, cpu, &policy(), Duration::from_secs(300), now).map(|d| d.action)
    }

    #[test]
    fn the_policy_reads_its_settings_and_zero_turns_a_rule_off() {
        let p = ReapPolicy::from_vars(&Vars::default()).unwrap();
        assert_eq!(
            (
                p.idle_timeout,
                p.max_age,
                p.failed_retention,
                p.namespace_retention,
                p.dry_run
            ),
            (Some(4 * HOUR), None, 24 * HOUR, Some(7 * 24 * HOUR), false)
        );
        assert_eq!((p.idle_cpu_millis, p.page), (10.0, 500));
        let off = ReapPolicy::from_vars(&Vars::from_pairs([
            ("REXEC_SERVER_IDLE_TIMEOUT", "0"),
            ("REXEC_NAMESPACE_RETENTION", "0"),
        ]))
        .unwrap();
        assert_eq!((off.idle_timeout, off.namespace_retention), (None, None));
        for (name, bad) in [
            ("REXEC_SERVER_IDLE_CPU", "lots"),
            ("REXEC_REAPER_DRY_RUN", "maybe"),
            ("REXEC_SERVER_MAX_AGE", "-1"),
            ("REXEC_REAPER_PAGE_SIZE", "0"),
            ("REXEC_REAPER_PAGE_SIZE", "5001"),
        ] {
            assert_eq!(
                ReapPolicy::from_vars(&Vars::from_pairs([(name, bad)]))
                    .unwrap_err()
                    .variable,
                name
            );
        }
    }

    #[test]
    fn a_failure_is_recorded_at_once_and_its_server_removed_after_the_retention() {
        let now = SystemTime::now();
        // Not ready 301 s after its pod was created: failed, seen first.
        let slow = pod(now - Duration::from_secs(301), false);
        assert_eq!(action(&claim(), Some(&slow), None, now), Some(Action::RecordFailure));
        let young = pod(now - Duration::from_secs(30), false);
        assert_eq!(action(&claim(), Some(&young), None, now), None);
        let recorded = |ago: Duration| Claim {
            failure: Some("The environment cannot be built".into()),
            failed_at: Some(now - ago),
            ..claim()
        };
        assert_eq!(
            action(&recorded(HOUR), None, None, now),
            None,
            "kept for people to read"
        );
        assert_eq!(
            action(&recorded(25 * HOUR), None, None, now),
            Some(Action::RemoveFailed)
        );
    }

    #[test]
    fn old_servers_expire_and_idle_ones_are_marked_then_removed() {
        let now = SystemTime::now();
        let ready = pod(now - HOUR, true);
        assert_eq!(
            action(&claim(), Some(&pod(now - 25 * HOUR, true)), Some(500.0), now),
            Some(Action::Expire)
        );
        assert_eq!(action(&claim(), Some(&ready), Some(500.0), now), None, "busy");
        assert_eq!(action(&claim(), Some(&ready), Some(2.0), now), Some(Action::MarkIdle));
        assert_eq!(
            action(&claim(), Some(&ready), None, now),
            None,
            "no metrics: never idle"
        );
        let idle = |ago: Duration| Claim {
            idle_since: Some(now - ago),
            ..claim()
        };
        assert_eq!(action(&idle(HOUR), Some(&ready), Some(2.0), now), None);
        assert_eq!(
            action(&idle(5 * HOUR), Some(&ready), Some(2.0), now),
            Some(Action::RemoveIdle)
        );
        assert_eq!(
            action(&idle(5 * HOUR), Some(&ready), Some(40.0), now),
            Some(Action::MarkBusy)
        );
        // A server that is not ready (reconnecting to the broker) is never idle; it has the start
        // timeout to reconnect, counted from when it lost its connection.
        let reconnecting = pod_changed(now - 5 * HOUR, false, now - Duration::from_secs(60));
        assert_eq!(action(&idle(5 * HOUR), Some(&reconnecting), Some(2.0), now), None);
        let lost = pod_changed(now - 5 * HOUR, false, now - Duration::from_secs(400));
        assert_eq!(
            action(&idle(5 * HOUR), Some(&lost), Some(2.0), now),
            Some(Action::RecordFailure)
        );
    }

    #[test]
    fn a_terminated_servers_namespace_goes_after_the_retention() {
        let now = SystemTime::now();
        let terminated = |ago: Duration| Claim {
            terminated: true,
            terminated_at: Some(now - ago),
            ..claim()
        };
        assert_eq!(action(&terminated(HOUR), None, None, now), None);
        assert_eq!(
            action(&terminated(8 * 24 * HOUR), None, None, now),
            Some(Action::RemoveNamespace)
        );
    }
}
