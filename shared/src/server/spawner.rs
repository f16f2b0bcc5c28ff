//! The lifecycle of a caller's rexec-server on the cluster: create, reuse, replace, describe,
//! terminate.
//!
//! One ConfigMap per caller (`rexec-server`, the claim) says what the server is built from
//! and which generation runs; its pod is `rexec-server-<generation>`. Creating the claim is
//! the lock: of concurrent first spawns one creates it and the others find it, so one server
//! is made. A replacement updates the claim with its `resourceVersion`, so of concurrent
//! replacements one wins and the others get 409. Spawn answers once the objects are written and
//! never waits for the pod (API Gateway cuts requests at 30 s).
//!
//! Every operation first checks that the caller's namespace is managed by this service and
//! records the caller as its owner (409 otherwise, never access). Every spawn brings the
//! namespace's labels and its guard rails to what this release writes (server-side apply), in
//! parallel with reading the claim.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::claim::{self, Claim};
use super::error::ServerError;
use super::manifests;
use super::naming::{MANAGER, Naming, Owner};
use super::requirements::Requirements;
use super::settings::ServerSettings;
use super::status::{self, Phase};
use crate::cluster::{Cluster, ClusterError};
use crate::config::{ConfigError, Vars};
use crate::identity::Identity;

/// A caller's server as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerView {
    #[schema(example = "rexec-f47ac10b-58cc-4372-a567-0e02b2c3d479")]
    pub namespace: String,
    #[schema(example = "rexec-server-1")]
    pub name: String,
    pub phase: Phase,
    pub ready: bool,
    /// When something is wrong or pending: what, in words a person can act on.
    pub reason: Option<String>,
    #[schema(example = "3.11")]
    pub python_version: String,
    /// The requirement lines, the interpreter pin first.
    #[schema(example = json!(["python==3.11", "numpy>=1.26"]))]
    pub requirements: Vec<String>,
    /// SHA-256 of the normalised requirements: the identity of the environment.
    pub digest: String,
    /// Increases with each replacement.
    pub generation: u64,
    /// When this generation was requested (RFC 3339).
    pub created: Option<String>,
    pub age_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Spawned {
    Created,
    Reused,
    Replaced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Terminated {
    /// The server and its namespace are being removed.
    Deleted,
    /// A removal was already under way.
    AlreadyTerminating,
    /// There was nothing to remove.
    NothingThere,
}

/// Reading and removing callers' servers: what get-server and delete-server need.
pub struct Servers {
    cluster: Cluster,
    naming: Naming,
}

/// Creating, reusing and replacing callers' servers: [`Servers`] and what a server is built with.
pub struct Spawner {
    servers: Servers,
    settings: ServerSettings,
}

/// Makes `object` as we write it, creating it if absent (server-side apply, our fields win).
async fn apply<K>(api: Api<K>, object: K) -> Result<(), ClusterError>
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
    pub fn new(cluster: Cluster, naming: Naming) -> Self {
        Self { cluster, naming }
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self::new(Cluster::from_vars(vars)?, Naming::from_vars(vars)?))
    }

    pub fn owner(&self, identity: &Identity) -> Owner {
        Owner::new(&self.naming, identity)
    }

    /// The caller's server, if there is one.
    pub async fn describe(&self, identity: &Identity) -> Result<Option<ServerView>, ServerError> {
        let client = self.cluster.client().await?;
        let owner = self.owner(identity);
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
        let events: Api<Event> = Api::namespaced(client, &owner.namespace);
        let events = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .map_err(ClusterError::from)?
            .items;
        let mut view = view(&owner, &claim, pod.as_ref(), &events);
        if namespace.metadata.deletion_timestamp.is_some() {
            view.phase = Phase::Terminating;
            view.ready = false;
            view.reason = Some("The server is being removed.".into());
        }
        Ok(Some(view))
    }

    /// Removes the caller's server with its namespace.
    pub async fn terminate(&self, identity: &Identity) -> Result<Terminated, ServerError> {
        let client = self.cluster.client().await?;
        let owner = self.owner(identity);
        let Some(namespace) = namespace_any(&client, &owner).await? else {
            return Ok(Terminated::NothingThere);
        };
        if namespace.metadata.deletion_timestamp.is_some() {
            return Ok(Terminated::AlreadyTerminating);
        }
        let namespaces: Api<Namespace> = Api::all(client);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: namespace.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match namespaces
            .delete(&owner.namespace, &params)
            .await
            .map_err(ClusterError::from)
        {
            Ok(_) => Ok(Terminated::Deleted),
            Err(ClusterError::NotFound) => Ok(Terminated::NothingThere),
            Err(ClusterError::Conflict(_)) => Ok(Terminated::AlreadyTerminating),
            Err(err) => Err(err.into()),
        }
    }
}

impl Spawner {
    pub fn new(servers: Servers, settings: ServerSettings) -> Self {
        Self { servers, settings }
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self::new(Servers::from_vars(vars)?, ServerSettings::from_vars(vars)?))
    }

    /// Reading and removing, with the same cluster and names.
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// Creates the caller's server, reuses it when it runs the same requirements, or replaces
    /// it when `force` is set. A server with other requirements and no `force` is a 409.
    pub async fn spawn(
        &self,
        identity: &Identity,
        reqs: &Requirements,
        force: bool,
    ) -> Result<(Spawned, ServerView), ServerError> {
        let client = self.servers.cluster.client().await?;
        let owner = self.servers.owner(identity);
        let claims: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
        if namespace(&client, &owner).await?.is_none() {
            self.create_namespace(&client, &owner).await?;
        }
        let (existing, ()) = tokio::try_join!(
            async {
                claims
                    .get_opt(claim::NAME)
                    .await
                    .map_err(|e| ServerError::from(ClusterError::from(e)))
            },
            self.reconcile_guard_rails(&client, &owner),
        )?;
        let claim = match existing {
            Some(cm) => cm,
            None => match claims
                .create(&PostParams::default(), &claim::build(&owner, &self.settings, reqs, 1))
                .await
            {
                Ok(cm) => {
                    let pod = self.create_pod(&client, &owner, reqs, 1).await?;
                    return Ok((Spawned::Created, view(&owner, &Claim::read(&cm)?, pod.as_ref(), &[])));
                }
                Err(err) => match ClusterError::from(err) {
                    // Another spawn of this caller won the race: decide against what it made.
                    ClusterError::AlreadyExists => claims.get(claim::NAME).await.map_err(ClusterError::from)?,
                    other => return Err(other.into()),
                },
            },
        };
        let current = Claim::read(&claim)?;
        if current.digest == reqs.digest && !force {
            let pod = self.ensure_pod(&client, &owner, reqs, current.generation).await?;
            return Ok((Spawned::Reused, view(&owner, &current, pod.as_ref(), &[])));
        }
        if !force {
            return Err(ServerError::DifferentRequirements {
                running: current.requirements,
            });
        }
        let generation = current.generation + 1;
        let mut replacement = claim::build(&owner, &self.settings, reqs, generation);
        replacement.metadata.resource_version = current.resource_version.clone();
        let cm = claims
            .replace(claim::NAME, &PostParams::default(), &replacement)
            .await
            .map_err(ClusterError::from)?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        match pods
            .delete(&manifests::pod_name(current.generation), &DeleteParams::default())
            .await
            .map_err(ClusterError::from)
        {
            Ok(_) | Err(ClusterError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
        let pod = self.create_pod(&client, &owner, reqs, generation).await?;
        Ok((Spawned::Replaced, view(&owner, &Claim::read(&cm)?, pod.as_ref(), &[])))
    }

    /// Creates the caller's namespace; one found instead must be ours and the caller's.
    async fn create_namespace(&self, client: &Client, owner: &Owner) -> Result<(), ServerError> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        match namespaces
            .create(&PostParams::default(), &manifests::namespace(owner))
            .await
            .map_err(ClusterError::from)
        {
            Ok(_) => Ok(()),
            Err(ClusterError::AlreadyExists) => namespace(client, owner).await.map(|_| ()),
            Err(err) => Err(err.into()),
        }
    }

    /// Brings the namespace's labels and its guard rails (quota, limits, network policy) to what
    /// this release writes, on every spawn: a hardened release reaches existing namespaces.
    async fn reconcile_guard_rails(&self, client: &Client, owner: &Owner) -> Result<(), ServerError> {
        let ns = &owner.namespace;
        tokio::try_join!(
            apply(Api::all(client.clone()), manifests::namespace(owner)),
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
        )?;
        Ok(())
    }

    /// Creates the pod of `generation`; `None` when a concurrent spawn created it first.
    async fn create_pod(
        &self,
        client: &Client,
        owner: &Owner,
        reqs: &Requirements,
        generation: u64,
    ) -> Result<Option<Pod>, ServerError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        match pods
            .create(
                &PostParams::default(),
                &manifests::pod(owner, &self.settings, reqs, generation),
            )
            .await
        {
            Ok(pod) => Ok(Some(pod)),
            Err(err) => match ClusterError::from(err) {
                ClusterError::AlreadyExists => Ok(pods
                    .get_opt(&manifests::pod_name(generation))
                    .await
                    .map_err(ClusterError::from)?),
                other => Err(other.into()),
            },
        }
    }

    /// The pod of `generation`, created again if it is gone (evicted, deleted by hand).
    async fn ensure_pod(
        &self,
        client: &Client,
        owner: &Owner,
        reqs: &Requirements,
        generation: u64,
    ) -> Result<Option<Pod>, ServerError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
        match pods
            .get_opt(&manifests::pod_name(generation))
            .await
            .map_err(ClusterError::from)?
        {
            Some(pod) => Ok(Some(pod)),
            None => self.create_pod(client, owner, reqs, generation).await,
        }
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

fn view(owner: &Owner, claim: &Claim, pod: Option<&Pod>, events: &[Event]) -> ServerView {
    let assessment = status::assess(pod, events);
    ServerView {
        namespace: owner.namespace.clone(),
        name: manifests::pod_name(claim.generation),
        phase: assessment.phase,
        ready: assessment.ready,
        reason: assessment.reason,
        python_version: claim.python.clone(),
        requirements: claim.requirements.clone(),
        digest: claim.digest.clone(),
        generation: claim.generation,
        created: claim.created.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        age_seconds: claim
            .created
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
    }
}
