//! The lifecycle of a caller's rexec-server on the cluster: create, reuse, replace, wait for,
//! describe, terminate.
//!
//! One ConfigMap per caller (`rexec-server`, the claim) says what the server is built from
//! and which generation runs; its pod is `rexec-server-<generation>`. Creating the claim is
//! the lock: of concurrent first spawns one creates it and the others find it, so one server
//! is made. A replacement updates the claim with its `resourceVersion`, so of concurrent
//! replacements one wins and the others get 409. What a spawn does with the server it finds
//! (reuse it, make its pod again, refuse, replace it) is decided by [`spawn_plan::plan`], a pure
//! function of what the spawn read; this module reads, and carries the plan out.
//!
//! A spawn then watches the pod until the server is ready or has failed, for at most the
//! spawn's wait (`REXEC_SPAWN_WAIT_SECONDS`, always under API Gateway's 29 s); the caller is
//! told the stage reached. A failed server's reason is recorded in the claim and its pod
//! removed, so the quota is freed and the reason outlives the pod; a server not ready within
//! `REXEC_START_TIMEOUT` counts as failed. A spawn finding a failed server tries again with a
//! new generation.
//!
//! Terminate removes the caller's pod and marks the claim terminated; the namespace and its
//! guard rails stay, so a spawn right after it starts the next generation at once.
//!
//! Every operation first checks that the caller's namespace is managed by this service and
//! records the caller as its owner (409 otherwise, never access). Every spawn brings the
//! namespace's labels and its guard rails to what this release writes (server-side apply).
//!
//! What does not depend on an answer is asked at once, so a spawn waits on few round trips to
//! the API server: a new server four (the namespace read and created at once; then its claim,
//! guard rails and the environment's builds together; then the pod; then the claim read again,
//! while the pod is watched), a reused one two (the namespace read, and its create refused; then
//! its claim, guard rails and pods together), a replacement five (the namespace; the claim,
//! guard rails, pods and, forced, the builds; the claim replaced; the old pod removed while the
//! new one is created, the quota has room for both; the claim read again; a replacement of a
//! failed or terminated server reads the builds after the claim, six). A forced spawn builds
//! its environment anew (`force_reinstall` asks for a fresh resolution), which adds the build's
//! files and its Job, two more. A new build is started only
//! after the claim is written, by the spawn that wrote it, and a build refused (one of the
//! caller's own runs, or every slot is taken: see [`environment::plan`]) is refused before the
//! claim changes. The
//! claim is read again after a pod is made because a concurrent spawn may have replaced it in
//! between, and removed the pod before it existed: the spawn that made the pod late removes it
//! and answers 409, so a namespace never keeps a server of an older generation.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{AsyncReadExt, StreamExt, pin_mut};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::claim::{self, Claim};
use super::environment::{self, Environment, Plan, Refusal};
use super::error::ServerError;
use super::manifests;
use super::naming::{MANAGED_BY, MANAGER, Naming, OWNER, Owner};
use super::requirements::Requirements;
use super::settings::ServerSettings;
use super::spawn_plan::{self, SpawnPlan, Spawned};
use super::status::{self, Phase, Stage, Versions};
use crate::cluster::{self, Cluster, ClusterError};
use crate::config::{ConfigError, Vars};
use crate::identity::Identity;
use crate::metrics::{self, Metric};
use manifests::{APP, APP_NAME};

/// A caller's server, as it was read: its claim, its pod's state, and when (`seen`). The API's
/// wire form is `http::api::rexec::Server`.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The owner's `sub`: the identity the server belongs to.
    pub owner: String,
    /// The owner's username when the server was requested, where recorded.
    pub username: Option<String>,
    pub namespace: String,
    pub name: String,
    pub phase: Phase,
    /// Where the server is on its way to ready.
    pub stage: Stage,
    /// Connected to the broker: remote calls reach it.
    pub ready: bool,
    /// When something is wrong or pending: what, in words a person can act on.
    pub reason: Option<String>,
    /// While the environment is built: the installer's latest line (`describe` only).
    pub progress: Option<String>,
    pub python_version: String,
    /// The versions in the server's environment, once built.
    pub versions: Option<Versions>,
    /// The requirement lines, the interpreter pin first.
    pub requirements: Vec<String>,
    /// SHA-256 of the normalised requirements: the identity of the environment.
    pub digest: String,
    /// Increases with each replacement.
    pub generation: u64,
    /// When this generation was requested.
    pub created: Option<SystemTime>,
    /// Since when the reaper has seen the server ready and idle; `None` while it is busy or not
    /// ready.
    pub idle_since: Option<SystemTime>,
    /// What the server's container requests and may use at most; `None` without a pod.
    pub resources: Option<Resources>,
    /// When it was read: its age and idle time are counted to this.
    pub seen: SystemTime,
}

/// Kubernetes resource quantities by resource name (`cpu`, `memory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    #[schema(example = json!({"cpu": "250m", "memory": "512Mi"}))]
    pub requests: BTreeMap<String, String>,
    #[schema(example = json!({"cpu": "2", "memory": "4Gi"}))]
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    /// The server container's resources in `pod`.
    fn of(pod: &Pod) -> Option<Self> {
        let container = pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == manifests::SERVER_CONTAINER)?;
        let quantities = |q: Option<&BTreeMap<String, Quantity>>| {
            q.into_iter()
                .flatten()
                .map(|(name, quantity)| (name.clone(), quantity.0.clone()))
                .collect()
        };
        let resources = container.resources.as_ref();
        Some(Self {
            requests: quantities(resources.and_then(|r| r.requests.as_ref())),
            limits: quantities(resources.and_then(|r| r.limits.as_ref())),
        })
    }
}

/// One page of every caller's server.
#[derive(Debug, Clone)]
pub struct Page {
    pub servers: Vec<Server>,
    /// The cluster's `continue` token of the next page; `None` on the last.
    pub next: Option<String>,
}

/// What a removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminated {
    /// The server is being removed.
    Deleted,
    /// A removal was already under way.
    AlreadyTerminating,
    /// There was nothing to remove.
    NothingThere,
}

/// Reading and removing callers' servers: what get-server, delete-server and the reaper need.
pub struct Servers {
    pub(super) cluster: Cluster,
    naming: Naming,
    /// How long a server may take to become ready before it counts as failed.
    pub(super) start_timeout: Duration,
}

/// Creating, reusing and replacing callers' servers: [`Servers`] and what a server is built with.
pub struct Spawner {
    servers: Servers,
    settings: ServerSettings,
    /// How long a spawn waits for the server to be ready before it answers with the stage.
    wait: Duration,
    /// Set once this container has brought the builds' quota to its settings: they change only
    /// with a deployment, which starts new containers.
    build_quota: tokio::sync::OnceCell<()>,
}

/// Makes `object` as we write it, creating it if absent (server-side apply, our fields win).
pub(super) async fn apply<K>(api: Api<K>, object: K) -> Result<(), ClusterError>
where
    K: kube::Resource + Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned,
{
    let name = object.meta().name.as_deref().expect("manifests are named");
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
        .await
        .map(|_| ())
        .map_err(ClusterError::from)
}

impl Servers {
    pub fn new(cluster: Cluster, naming: Naming, start_timeout: Duration) -> Self {
        Self {
            cluster,
            naming,
            start_timeout,
        }
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let start_timeout = vars.seconds_or("REXEC_START_TIMEOUT", Duration::from_secs(300))?;
        if start_timeout.is_zero() {
            return Err(ConfigError::new("REXEC_START_TIMEOUT", "must be more than 0"));
        }
        Ok(Self::new(
            Cluster::from_vars(vars)?,
            Naming::from_vars(vars)?,
            start_timeout,
        ))
    }

    /// The names of the caller whose `sub` is `sub`.
    pub fn owner(&self, sub: &str) -> Owner {
        Owner::new(&self.naming, sub)
    }

    /// The server of the caller whose `sub` is `sub`, if there is one.
    pub async fn describe(&self, sub: &str) -> Result<Option<Server>, ServerError> {
        let client = self.cluster.client().await?;
        let owner = self.owner(sub);
        let Some(namespace) = namespace_any(&client, &owner).await? else {
            return Ok(None);
        };
        let claims: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
        let Some(cm) = claims.get_opt(claim::NAME).await.map_err(ClusterError::from)? else {
            return Ok(None);
        };
        let claim = Claim::read(&cm)?;
        let name = manifests::pod_name(claim.generation);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        let pod = pods.get_opt(&name).await.map_err(ClusterError::from)?;
        if claim.terminated && pod.is_none() {
            return Ok(None);
        }
        let mut view = self.view(&owner, &claim, pod.as_ref(), &[]);
        if pod.is_some() && !view.ready {
            // The pod's Events name causes its status does not (an image, the scheduler).
            let events = events(&client, &owner, &name).await?;
            view = self.view(&owner, &claim, pod.as_ref(), &events);
        }
        if view.stage == Stage::Building {
            follow_build(&pods, &mut view).await;
        }
        if namespace.metadata.deletion_timestamp.is_some() {
            going(&mut view);
        }
        Ok(Some(view))
    }

    /// One page of every caller's server, in the order of their namespaces: up to `limit`
    /// claims from where `token` (the cluster's own `continue` token) says, those in `phase`
    /// kept. Three calls: the claims, then their pods and namespaces together. The reasons are
    /// read from the pods' status alone ([`Servers::describe`] adds their Events). Servers
    /// terminated and gone are not shown; a claim outside a namespace this service manages for
    /// the `sub` it records is skipped, and logged.
    pub async fn list(&self, phase: Option<Phase>, limit: u32, token: Option<&str>) -> Result<Page, ServerError> {
        let client = self.cluster.client().await?;
        let mut params = ListParams::default()
            .labels(&format!("{MANAGED_BY}={MANAGER}"))
            .fields(&format!("metadata.name={}", claim::NAME))
            .limit(limit);
        if let Some(token) = token {
            params = params.continue_token(token);
        }
        let page =
            Api::<ConfigMap>::all(client.clone())
                .list(&params)
                .await
                .map_err(|err| match ClusterError::from(err) {
                    ClusterError::Expired(_) | ClusterError::Refused(_) if token.is_some() => ServerError::BadContinue,
                    other => other.into(),
                })?;
        let claims: Vec<(Owner, Claim)> = page
            .items
            .iter()
            .filter_map(|cm| {
                let claim = Claim::read(cm).ok()?;
                let owner = self.owner(claim.sub.as_deref()?);
                if cm.metadata.namespace.as_ref() != Some(&owner.namespace) {
                    tracing::warn!(namespace = ?cm.metadata.namespace, "a claim outside its owner's namespace is not listed");
                    return None;
                }
                Some((owner, claim))
            })
            .collect();
        let (pods, namespaces) = match claims.is_empty() {
            true => (Vec::new(), Vec::new()),
            false => {
                let slugs: Vec<&str> = claims.iter().map(|(owner, _)| owner.slug.as_str()).collect();
                let owners = format!("{OWNER} in ({})", slugs.join(","));
                let (pods, namespaces): (Api<Pod>, Api<Namespace>) =
                    (Api::all(client.clone()), Api::all(client.clone()));
                let of_pods = ListParams::default().labels(&format!("{APP}={APP_NAME},{owners}"));
                let of_namespaces = ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER},{owners}"));
                tokio::try_join!(pods.list(&of_pods), namespaces.list(&of_namespaces))
                    .map(|(pods, namespaces)| (pods.items, namespaces.items))
                    .map_err(ClusterError::from)?
            }
        };
        let pods: HashMap<(String, String), Pod> = pods.into_iter().map(|p| (key(&p), p)).collect();
        let namespaces: HashMap<String, Namespace> = namespaces.into_iter().map(|ns| (key(&ns).1, ns)).collect();
        let mut servers = Vec::new();
        for (owner, claim) in claims {
            let Some(namespace) = namespaces.get(&owner.namespace).filter(|ns| owner.check(ns).is_ok()) else {
                continue;
            };
            let pod = pods.get(&(owner.namespace.clone(), manifests::pod_name(claim.generation)));
            if claim.terminated && pod.is_none() {
                continue;
            }
            let mut view = self.view(&owner, &claim, pod, &[]);
            if namespace.metadata.deletion_timestamp.is_some() {
                going(&mut view);
            }
            if phase.is_none_or(|phase| view.phase == phase) {
                servers.push(view);
            }
        }
        Ok(Page {
            servers,
            next: page.metadata.continue_.filter(|c| !c.is_empty()),
        })
    }

    /// Removes the caller's server: its pod goes and its claim is marked terminated. The
    /// namespace and its guard rails stay for the next spawn.
    pub async fn terminate(&self, sub: &str) -> Result<Terminated, ServerError> {
        let client = self.cluster.client().await?;
        let owner = self.owner(sub);
        let Some(namespace) = namespace_any(&client, &owner).await? else {
            return Ok(Terminated::NothingThere);
        };
        if namespace.metadata.deletion_timestamp.is_some() {
            return Ok(Terminated::AlreadyTerminating);
        }
        let claims: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
        let Some(cm) = claims.get_opt(claim::NAME).await.map_err(ClusterError::from)? else {
            return Ok(Terminated::NothingThere);
        };
        let claim = Claim::read(&cm)?;
        let removed = match claim.terminated {
            false => end(&client, &owner.namespace, &claim, SystemTime::now()).await?,
            true => remove_pod(&Api::namespaced(client, &owner.namespace), claim.generation).await?,
        };
        Ok(match (claim.terminated, removed) {
            (false, _) => Terminated::Deleted,
            (true, true) => Terminated::AlreadyTerminating,
            (true, false) => Terminated::NothingThere,
        })
    }

    /// How the generation a claim records is doing.
    fn view(&self, owner: &Owner, claim: &Claim, pod: Option<&Pod>, events: &[Event]) -> Server {
        let now = SystemTime::now();
        let a = status::assess_server(claim, pod, events, self.start_timeout, now);
        let idle_since = claim.idle_since.filter(|_| a.ready());
        Server {
            owner: owner.sub.clone(),
            username: claim.username.clone(),
            namespace: owner.namespace.clone(),
            name: manifests::pod_name(claim.generation),
            phase: a.phase(),
            stage: a.stage,
            ready: a.ready(),
            reason: a.reason,
            progress: None,
            python_version: claim.python.clone(),
            versions: a.versions,
            requirements: claim.requirements.clone(),
            digest: claim.digest.clone(),
            generation: claim.generation,
            created: claim.created,
            idle_since,
            resources: pod.and_then(Resources::of),
            seen: now,
        }
    }
}

/// What every step of one spawn works with.
#[derive(Clone, Copy)]
struct Call<'a> {
    client: &'a Client,
    owner: &'a Owner,
    identity: &'a Identity,
    reqs: &'a Requirements,
}

impl Spawner {
    pub fn new(servers: Servers, settings: ServerSettings, wait: Duration) -> Self {
        Self {
            servers,
            settings,
            wait,
            build_quota: tokio::sync::OnceCell::new(),
        }
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let wait = vars.seconds_or("REXEC_SPAWN_WAIT_SECONDS", Duration::from_secs(20))?;
        if wait > Duration::from_secs(25) {
            return Err(ConfigError::new(
                "REXEC_SPAWN_WAIT_SECONDS",
                "must be 25 or less: API Gateway ends a request at 29 s",
            ));
        }
        Ok(Self::new(
            Servers::from_vars(vars)?,
            ServerSettings::from_vars(vars)?,
            wait,
        ))
    }

    /// Reading and removing, with the same cluster and names.
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// Creates the caller's server, reuses it when it runs the same requirements, or replaces
    /// it when `force` is set, then waits for it (see the module's documentation). A server
    /// running other requirements and no `force` is a 409; a failed or terminated one is
    /// replaced without asking.
    pub async fn spawn(
        &self,
        identity: &Identity,
        reqs: &Requirements,
        force: bool,
    ) -> Result<(Spawned, Server), ServerError> {
        let client = self.servers.cluster.client().await?;
        let owner = self.servers.owner(&identity.sub);
        let claims: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        let fresh = self.find_or_create_namespace(&client, &owner).await?;
        if fresh {
            // A namespace just made holds nothing yet: its claim, its guard rails and the
            // environment are written at once.
            let (made, (), plan) = tokio::try_join!(
                self.create_claim(&claims, &owner, identity, reqs),
                self.reconcile_guard_rails(&client, &owner),
                self.plan_environment(&client, &owner, reqs, force),
            )?;
            if let Some(claim) = made {
                return self.start(&client, &owner, reqs, &claim, plan).await;
            }
        }
        // A forced spawn replaces the server: what its environment needs is read at once.
        let (existing, (), present, forced_plan) = tokio::try_join!(
            async { claims.get_opt(claim::NAME).await.map_err(cluster_error) },
            self.reconcile_guard_rails(&client, &owner),
            async { pods.list(&ListParams::default()).await.map_err(cluster_error) },
            async {
                match force {
                    true => self.plan_environment(&client, &owner, reqs, force).await.map(Some),
                    false => Ok(None),
                }
            },
        )?;
        let cm = match existing {
            Some(cm) => cm,
            None => match self.create_claim(&claims, &owner, identity, reqs).await? {
                Some(claim) => {
                    let plan = self.plan_environment(&client, &owner, reqs, force).await?;
                    return self.start(&client, &owner, reqs, &claim, plan).await;
                }
                // Another spawn of this caller won the race: decide against what it made.
                None => claims.get(claim::NAME).await.map_err(ClusterError::from)?,
            },
        };
        let current = Claim::read(&cm)?;
        let name = manifests::pod_name(current.generation);
        // The current generation's pod, taken out of the list: the rest holds the stale ones.
        let mut present = present.items;
        let pod = match current.terminated {
            true => None,
            false => present
                .iter()
                .position(|pod| pod.metadata.name.as_ref() == Some(&name))
                .map(|at| present.swap_remove(at)),
        };
        let stage = self.servers.view(&owner, &current, pod.as_ref(), &[]).stage;
        let decided = spawn_plan::plan(&current, pod.is_some(), stage, &reqs.digest, force);
        let call = Call {
            client: &client,
            owner: &owner,
            identity,
            reqs,
        };
        let ((), done) = tokio::try_join!(
            remove_stale(&pods, &present, current.generation),
            self.carry_out(&call, &current, pod, decided, forced_plan)
        )?;
        Ok(done)
    }

    /// Carries out `plan` for the server of `current`, whose pod is `pod` (see [`spawn_plan`]).
    async fn carry_out(
        &self,
        call: &Call<'_>,
        current: &Claim,
        pod: Option<Pod>,
        plan: SpawnPlan,
        forced_plan: Option<Result<Plan, Refusal>>,
    ) -> Result<(Spawned, Server), ServerError> {
        let Call {
            client, owner, reqs, ..
        } = *call;
        match plan {
            SpawnPlan::Reuse => {
                let view = self.wait_for(client, owner, current, pod).await?;
                Ok((Spawned::Reused, view))
            }
            SpawnPlan::Remake => {
                let plan = self.plan_environment(client, owner, reqs, false).await??;
                let build = self.build(client, owner, reqs, plan).await?;
                let pod = self.create_pod(client, owner, reqs, current, build).await?;
                let view = self.wait_for_made(client, owner, current, pod).await?;
                Ok((Spawned::Reused, view))
            }
            SpawnPlan::Refuse => Err(ServerError::DifferentRequirements {
                running: current.requirements.clone(),
            }),
            SpawnPlan::Replace { outcome, generation } => {
                let view = self.replace(call, current, generation, forced_plan).await?;
                Ok((outcome, view))
            }
        }
    }

    /// Replaces the server of `current` with one of `generation`, on the build `plan` says (a
    /// forced spawn read it with the claim; else it is read now). A build is refused before the
    /// claim changes, and started only
    /// by the spawn whose replacement of the claim wins: of concurrent replacements, one starts a
    /// build.
    async fn replace(
        &self,
        call: &Call<'_>,
        current: &Claim,
        generation: u64,
        plan: Option<Result<Plan, Refusal>>,
    ) -> Result<Server, ServerError> {
        let Call {
            client,
            owner,
            identity,
            reqs,
        } = *call;
        let plan = match plan {
            Some(plan) => plan,
            None => self.plan_environment(client, owner, reqs, false).await?,
        }?;
        let claims: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        let mut replacement = claim::build(owner, &identity.username, reqs, generation);
        replacement.metadata.resource_version = current.resource_version.clone();
        let cm = claims
            .replace(claim::NAME, &PostParams::default(), &replacement)
            .await
            .map_err(cluster_error)?;
        let build = self.build(client, owner, reqs, plan).await?;
        let replaced = Claim::read(&cm)?;
        // The old pod stops while the new one starts: the quota has room for both.
        let (_, pod) = tokio::try_join!(
            remove_pod(&pods, current.generation),
            self.create_pod(client, owner, reqs, &replaced, build),
        )?;
        self.wait_for_made(client, owner, &replaced, pod).await
    }

    /// Creates the caller's claim, of generation 1; `None` when another spawn created it first.
    async fn create_claim(
        &self,
        claims: &Api<ConfigMap>,
        owner: &Owner,
        identity: &Identity,
        reqs: &Requirements,
    ) -> Result<Option<Claim>, ServerError> {
        let made = claims
            .create(
                &PostParams::default(),
                &claim::build(owner, &identity.username, reqs, 1),
            )
            .await;
        match made.map_err(ClusterError::from) {
            Ok(cm) => Ok(Some(Claim::read(&cm)?)),
            Err(ClusterError::AlreadyExists) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Starts the first server of a claim just created, on the build `plan` says, and waits for
    /// it. A build refused leaves the claim ended, so that the next spawn starts afresh.
    async fn start(
        &self,
        client: &Client,
        owner: &Owner,
        reqs: &Requirements,
        claim: &Claim,
        plan: Result<Plan, Refusal>,
    ) -> Result<(Spawned, Server), ServerError> {
        let build = match plan {
            Ok(plan) => self.build(client, owner, reqs, plan).await,
            Err(refusal) => Err(refusal.into()),
        };
        let build = match build {
            Ok(build) => build,
            Err(err) => {
                end(client, &owner.namespace, claim, SystemTime::now()).await?;
                return Err(err);
            }
        };
        let pod = self.create_pod(client, owner, reqs, claim, build).await?;
        let view = self.wait_for_made(client, owner, claim, pod).await?;
        Ok((Spawned::Created, view))
    }

    /// [`wait_for`](Self::wait_for) a pod this spawn made, while making sure the claim still
    /// names its generation. A spawn that replaced the claim meanwhile removed that pod before
    /// it existed: the pod made late is removed here and the caller asked to try again, so that
    /// no server of an older generation outlives its replacement.
    async fn wait_for_made(
        &self,
        client: &Client,
        owner: &Owner,
        claim: &Claim,
        pod: Option<Pod>,
    ) -> Result<Server, ServerError> {
        let claims: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        let still_current = async {
            let now = claims.get_opt(claim::NAME).await.map_err(cluster_error)?;
            let now = now.as_ref().map(Claim::read).transpose()?;
            if now.is_some_and(|now| now.generation == claim.generation && !now.terminated) {
                return Ok(());
            }
            remove_pod(&pods, claim.generation).await?;
            Err(ServerError::from(ClusterError::Conflict(
                "the server was replaced while it was being made".into(),
            )))
        };
        let ((), view) = tokio::try_join!(still_current, self.wait_for(client, owner, claim, pod))?;
        Ok(view)
    }

    /// Watches the pod of `claim` until its server is ready or has failed, or the spawn's wait
    /// ends. A failure is recorded in the claim and the pod removed.
    async fn wait_for(
        &self,
        client: &Client,
        owner: &Owner,
        claim: &Claim,
        mut pod: Option<Pod>,
    ) -> Result<Server, ServerError> {
        let name = manifests::pod_name(claim.generation);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        let deadline = Instant::now() + self.wait;
        let settled = |pod: Option<&Pod>| self.servers.view(owner, claim, pod, &[]).stage.is_final();
        'watch: while !settled(pod.as_ref()) {
            // Looked at again when the start timeout passes, event or not.
            let times_out = pod
                .as_ref()
                .and_then(|p| p.metadata.creation_timestamp.as_ref())
                .map(|t| SystemTime::from(t.0) + self.servers.start_timeout)
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
                .map(|d| Instant::now() + d + Duration::from_millis(10));
            let until = times_out.map_or(deadline, |t| t.min(deadline));
            let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                break;
            };
            let version = pod
                .as_ref()
                .and_then(|p| p.metadata.resource_version.clone())
                .unwrap_or_else(|| "0".into());
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(left.as_secs().max(1) as u32);
            let events = match pods.watch(&params, &version).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch the server's pod; answering with its stage");
                    break;
                }
            };
            pin_mut!(events);
            loop {
                let next = tokio::time::timeout_at(until.into(), events.next()).await;
                match next {
                    Err(_) => continue 'watch,
                    // The stream ended or broke (the server's timeout, a dropped connection):
                    // watched again from the last version seen.
                    Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)))) => {
                        pod = Some(p);
                        if settled(pod.as_ref()) {
                            break 'watch;
                        }
                    }
                    Ok(Some(Ok(WatchEvent::Deleted(_)))) => pod = None,
                    Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
                    // The version is too old to watch from: read the pod again.
                    Ok(Some(Ok(WatchEvent::Error(_)))) => {
                        pod = pod_named(&pods, &name).await?;
                        break;
                    }
                }
            }
        }
        let mut view = self.servers.view(owner, claim, pod.as_ref(), &[]);
        if view.stage == Stage::Failed && pod.is_some() {
            let events = events(client, owner, &name).await?;
            view = self.servers.view(owner, claim, pod.as_ref(), &events);
            if view.stage == Stage::Failed {
                let reason = view.reason.as_deref().unwrap_or_default();
                record_failure(client, &owner.namespace, claim, reason, SystemTime::now()).await?;
            }
        }
        Ok(view)
    }

    /// The caller's namespace, found or created, and whether it was created. It is read and
    /// created at once, so that neither a new caller nor a returning one waits on two round
    /// trips: for a returning caller the create is refused (409), for a new one the read finds
    /// nothing. One found must be ours and the caller's, and not terminating.
    async fn find_or_create_namespace(&self, client: &Client, owner: &Owner) -> Result<bool, ServerError> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let wanted = manifests::namespace(owner, SystemTime::now());
        let params = PostParams::default();
        let (found, made) = tokio::join!(namespace(client, owner), namespaces.create(&params, &wanted),);
        match made.map_err(ClusterError::from) {
            Ok(_) => Ok(true),
            Err(err) => match found? {
                Some(_) => Ok(false),
                // Made by a concurrent spawn between the read and the create.
                None if matches!(err, ClusterError::AlreadyExists) => namespace(client, owner).await.map(|_| false),
                None => Err(err.into()),
            },
        }
    }

    /// Brings the namespace's labels, its guard rails (quota, limits, network policy) and its claim
    /// of the environments' volume to what
    /// this release writes, on every spawn: a hardened release reaches existing namespaces.
    async fn reconcile_guard_rails(&self, client: &Client, owner: &Owner) -> Result<(), ServerError> {
        let ns = &owner.namespace;
        tokio::try_join!(
            apply(Api::all(client.clone()), manifests::namespace(owner, SystemTime::now())),
            apply(
                Api::namespaced(client.clone(), ns),
                manifests::resource_quota(owner, &self.settings)
            ),
            apply(
                Api::namespaced(client.clone(), ns),
                manifests::limit_range(owner, &self.settings)
            ),
            apply(
                Api::namespaced(client.clone(), ns),
                manifests::network_policy(owner, &self.settings)
            ),
            apply(
                Api::namespaced(client.clone(), ns),
                manifests::environment_claim(owner, &self.settings)
            ),
        )?;
        Ok(())
    }

    /// Creates the pod of `claim`'s generation, on the environment's `build`; a concurrent
    /// spawn's, when it created it first; 409 while an earlier server's pod of that name is
    /// going. A pod the namespace's quota has no room for ends the claim: the caller has no
    /// server (none is being made), and their next spawn starts afresh.
    async fn create_pod(
        &self,
        client: &Client,
        owner: &Owner,
        reqs: &Requirements,
        claim: &Claim,
        build: u64,
    ) -> Result<Option<Pod>, ServerError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        let pod = manifests::pod(owner, &self.settings, reqs, claim.generation, build);
        // In a namespace made a moment ago, the admission plug-ins wait for its default service
        // account and its quota's usage.
        match cluster::create(&pods, &pod).await {
            Ok(pod) => Ok(Some(pod)),
            // A pod of that name that is going is an earlier server's, not a concurrent
            // spawn's: the caller tries again once it is gone.
            Err(ClusterError::AlreadyExists) => match pod_named(&pods, &manifests::pod_name(claim.generation)).await? {
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => Err(ClusterError::Terminating.into()),
                found => Ok(found),
            },
            Err(full @ ClusterError::QuotaExceeded(_)) => {
                end(client, &owner.namespace, claim, SystemTime::now()).await?;
                Err(full.into())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// What the environment of a new server needs ([`environment::plan`]), from every build's
    /// Job and the environment's record, read at once.
    async fn plan_environment(
        &self,
        client: &Client,
        owner: &Owner,
        reqs: &Requirements,
        force: bool,
    ) -> Result<Result<Plan, Refusal>, ServerError> {
        let settings = &self.settings.environments;
        let env = Environment::of(&self.settings, reqs);
        let jobs: Api<Job> = Api::namespaced(client.clone(), &settings.namespace);
        let records: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
        let (builds, record) = tokio::try_join!(
            async {
                jobs.list(&ListParams::default().labels(environment::ENVIRONMENT))
                    .await
                    .map_err(cluster_error)
            },
            async {
                records
                    .get_opt(&environment::record_name(env.label()))
                    .await
                    .map_err(cluster_error)
            },
        )?;
        let record = record.as_ref().map(environment::Record::read);
        Ok(environment::plan(
            &env,
            &builds.items,
            record,
            &owner.slug,
            force,
            settings,
            SystemTime::now(),
        ))
    }

    /// Carries out the environment's plan: the number of the build the new server uses,
    /// started here for `owner` when the plan says so (see [`environment`](super::environment)).
    /// The builds' quota is brought to what the settings say with the first build a container
    /// starts; a build it has no room for is refused as busy.
    async fn build(&self, client: &Client, owner: &Owner, reqs: &Requirements, plan: Plan) -> Result<u64, ServerError> {
        let number = match plan {
            Plan::Use(number) => {
                metrics::count(Metric::EnvironmentCacheHits);
                return Ok(number);
            }
            Plan::Start(number) => number,
        };
        metrics::count(Metric::EnvironmentCacheMisses);
        let settings = &self.settings.environments;
        let env = Environment::of(&self.settings, reqs);
        let files: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
        let jobs: Api<Job> = Api::namespaced(client.clone(), &settings.namespace);
        let written = async {
            let made = files
                .create(
                    &PostParams::default(),
                    &manifests::build_files(&env, &self.settings, reqs, number),
                )
                .await;
            match made.map_err(ClusterError::from) {
                Ok(_) | Err(ClusterError::AlreadyExists) => Ok(()),
                Err(err) => Err(err),
            }
        };
        let quota = self.build_quota.get_or_try_init(|| {
            apply(
                Api::namespaced(client.clone(), &settings.namespace),
                manifests::build_quota(&self.settings),
            )
        });
        tokio::try_join!(quota, written)?;
        let job = manifests::build_job(&env, &self.settings, owner, reqs, number);
        // The builds' quota may have been made a moment ago: its usage is made first.
        match cluster::create(&jobs, &job).await {
            // Another spawn started this build first: it is the one used.
            Ok(_) | Err(ClusterError::AlreadyExists) => {}
            Err(ClusterError::QuotaExceeded(_)) => {
                return Err(ServerError::BuildsBusy {
                    retry_after: environment::BUSY_RETRY,
                });
            }
            Err(err) => return Err(err.into()),
        }
        tracing::info!(environment = env.label(), build = number, "environment build started");
        Ok(number)
    }
}

/// The pod `name`, if there is one. Read by listing, as a spawn reads its caller's pods with the
/// claim: the spawn's role lists pods and never gets one.
async fn pod_named(pods: &Api<Pod>, name: &str) -> Result<Option<Pod>, ServerError> {
    let found = pods
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .map_err(cluster_error)?;
    Ok(found.items.into_iter().next())
}

/// A request's failure as a server error.
fn cluster_error(err: kube::Error) -> ServerError {
    ClusterError::from(err).into()
}

/// The key of an object: (namespace, name).
pub(super) fn key<K: kube::Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// A server whose namespace is being deleted: terminating, whatever its pod says.
fn going(view: &mut Server) {
    view.phase = Phase::Terminating;
    view.stage = Stage::Terminating;
    view.ready = false;
    view.reason = Some("The server is being removed.".into());
}

/// The Events of the pod `name`, which often name a cause its status does not.
async fn events(client: &Client, owner: &Owner, name: &str) -> Result<Vec<Event>, ServerError> {
    let events: Api<Event> = Api::namespaced(client.clone(), &owner.namespace);
    Ok(events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map_err(ClusterError::from)?
        .items)
}

/// Where the environment's build of a server being built is: the tail of its wait for the
/// build, whose log follows the build's. Read at most 16 KiB, any bytes; a log that cannot be
/// read leaves the view as it was.
async fn follow_build(pods: &Api<Pod>, view: &mut Server) {
    const TAIL_BYTES: u64 = 16 * 1024;
    let params = LogParams {
        container: Some(manifests::WAIT_CONTAINER.into()),
        tail_lines: Some(20),
        limit_bytes: Some(TAIL_BYTES as i64),
        ..LogParams::default()
    };
    let mut tail = Vec::new();
    let read = match pods.log_stream(&view.name, &params).await {
        Ok(log) => log
            .take(TAIL_BYTES)
            .read_to_end(&mut tail)
            .await
            .map_err(|e| e.to_string()),
        Err(err) => Err(ClusterError::from(err).to_string()),
    };
    if let Err(error) = read {
        tracing::warn!(namespace = %view.namespace, %error, "cannot read the build's progress");
        return;
    }
    let progress = status::build_progress(&String::from_utf8_lossy(&tail));
    view.stage = progress.stage;
    view.phase = progress.stage.phase();
    view.reason = Some(progress.reason);
    view.progress = progress.latest;
}

/// Sets annotations of the claim (`null` removes one), if the claim is still the one read (409
/// otherwise).
pub(super) async fn annotate(
    claims: &Api<ConfigMap>,
    claim: &Claim,
    annotations: serde_json::Value,
) -> Result<(), ServerError> {
    let patch = json!({"metadata": {"resourceVersion": claim.resource_version, "annotations": annotations}});
    claims
        .patch(claim::NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(ClusterError::from)?;
    Ok(())
}

/// An RFC 3339 time, as the claim's annotations and the API hold it.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Records why and when `claim`'s generation failed and removes its pod, freeing its room in
/// the quota; whether it did. A claim changed meanwhile (a replacement won) is left as it is.
pub(super) async fn record_failure(
    client: &Client,
    namespace: &str,
    claim: &Claim,
    reason: &str,
    now: SystemTime,
) -> Result<bool, ServerError> {
    let claims: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let reason: String = reason.chars().take(4000).collect();
    let annotations = json!({claim::FAILURE: reason, claim::FAILED_AT: rfc3339(now)});
    match annotate(&claims, claim, annotations).await {
        Ok(()) => {}
        Err(ServerError::Cluster(ClusterError::Conflict(_))) => return Ok(false),
        Err(err) => return Err(err),
    }
    tracing::info!(%namespace, generation = claim.generation, "the server failed; its pod is removed");
    remove_pod(&Api::namespaced(client.clone(), namespace), claim.generation).await?;
    Ok(true)
}

/// Ends `claim`'s generation: the claim marked terminated (409 if it changed meanwhile), then
/// its pod removed; whether there was a pod.
pub(super) async fn end(client: &Client, namespace: &str, claim: &Claim, now: SystemTime) -> Result<bool, ServerError> {
    let claims: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    annotate(&claims, claim, json!({claim::TERMINATED: rfc3339(now)})).await?;
    remove_pod(&Api::namespaced(client.clone(), namespace), claim.generation).await
}

/// Deletes the pod of `generation`; whether there was one.
/// Removes the pods of generations older than `current`, made by a spawn that came too late and
/// could not remove its pod (see `wait_for_made`), while the spawn goes on.
async fn remove_stale(pods: &Api<Pod>, present: &[Pod], current: u64) -> Result<(), ServerError> {
    let stale = spawn_plan::stale_generations(
        present.iter().map(|pod| {
            let generation = pod.metadata.labels.as_ref().and_then(|l| l.get(claim::GENERATION));
            (
                generation.map(String::as_str),
                pod.metadata.deletion_timestamp.is_some(),
            )
        }),
        current,
    );
    for generation in stale {
        remove_pod(pods, generation).await?;
    }
    Ok(())
}

async fn remove_pod(pods: &Api<Pod>, generation: u64) -> Result<bool, ServerError> {
    match pods
        .delete(&manifests::pod_name(generation), &DeleteParams::default())
        .await
        .map_err(ClusterError::from)
    {
        Ok(_) => Ok(true),
        Err(ClusterError::NotFound) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The caller's namespace if it exists, is ours and records the caller as its owner,
/// terminating or not. Anything else is a 409, never access.
async fn namespace_any(client: &Client, owner: &Owner) -> Result<Option<Namespace>, ServerError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Some(namespace) = namespaces.get_opt(&owner.namespace).await.map_err(ClusterError::from)? else {
        return Ok(None);
    };
    owner.check(&namespace)?;
    Ok(Some(namespace))
}

/// The caller's namespace if it exists, is ours and is not terminating.
async fn namespace(client: &Client, owner: &Owner) -> Result<Option<Namespace>, ServerError> {
    match namespace_any(client, owner).await? {
        Some(ns) if ns.metadata.deletion_timestamp.is_some() => Err(ClusterError::Terminating.into()),
        other => Ok(other),
    }
}
