//! The Rexec Deployment API (`/rexec`): create, inspect and remove the caller's personal
//! rexec-server, and find the broker.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToSchema};

use crate::http::docs::BearerSecurity;
use crate::http::error::ErrorBody;
use crate::server::spawn_plan;
use crate::server::spawner::{self, Page, Resources, Server, rfc3339};
use crate::server::status::{Phase, Stage, Versions};

/// The form the published clients send to `POST /spawn`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SpawnForm {
    /// One requirement line per field, repeated, in file order (see `SpawnJson`).
    #[schema(example = json!(["python==3.11", "numpy>=1.26"]), min_items = 1)]
    requirments: Vec<String>,
    /// `True` replaces a server that runs other requirements.
    #[schema(example = "False")]
    force_reinstall: Option<String>,
    /// The caller's token, when no Authorization header is sent.
    token: Option<String>,
}

/// The JSON body of `POST /spawn`, sent with `Authorization: Bearer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnJson {
    /// The requirement lines, as in a requirements file: each blank, a comment, or a PEP 508
    /// requirement of a package of the index (name, extras, versions, marker) in printable
    /// ASCII without `$`, `\` or `#`, and no word starting with `-` but `--hash=` options at
    /// the end of an exact pin; exactly one is `python==X.Y`, X.Y an interpreter of the
    /// deployment. A line the server refuses is answered with 400 naming its number.
    #[schema(example = json!(["python==3.11", "numpy>=1.26"]), min_items = 1)]
    pub requirements: Vec<String>,
    #[serde(default)]
    pub force_reinstall: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpawnAnswer {
    /// What happened, for a person.
    #[serde(rename = "Status")]
    #[schema(example = "Your rexec server is being created.")]
    pub status: String,
    #[serde(rename = "Username")]
    pub username: String,
    /// The caller's group that admitted them, when an allow-list is enforced.
    #[serde(rename = "NDP_Endpoint_membership")]
    pub membership: Option<String>,
    pub outcome: Spawned,
    pub server: ServerView,
}

/// What a spawn did with the caller's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Spawned {
    Created,
    Reused,
    Replaced,
}

impl From<spawn_plan::Spawned> for Spawned {
    fn from(outcome: spawn_plan::Spawned) -> Self {
        match outcome {
            spawn_plan::Spawned::Created => Self::Created,
            spawn_plan::Spawned::Reused => Self::Reused,
            spawn_plan::Spawned::Replaced => Self::Replaced,
        }
    }
}

/// A caller's server as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerView {
    /// The owner's `sub`: the identity the server belongs to.
    #[schema(example = "f47ac10b-58cc-4372-a567-0e02b2c3d479")]
    pub owner: String,
    /// The owner's username when the server was requested, where recorded.
    #[schema(example = "alice")]
    pub username: Option<String>,
    #[schema(example = "rexec-f47ac10b-58cc-4372-a567-0e02b2c3d479")]
    pub namespace: String,
    #[schema(example = "rexec-server-1")]
    pub name: String,
    pub phase: Phase,
    /// Where the server is on its way to ready.
    pub stage: Stage,
    /// Connected to the broker: remote calls reach it.
    pub ready: bool,
    /// When something is wrong or pending: what, in words a person can act on.
    pub reason: Option<String>,
    /// While the environment is built: the installer's latest line (`GET /server` only).
    #[schema(example = "Prepared 12 packages in 3.41s")]
    pub progress: Option<String>,
    #[schema(example = "3.11")]
    pub python_version: String,
    /// The versions in the server's environment, once built: a client's must match.
    pub versions: Option<Versions>,
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
    /// Since when the reaper has seen the server ready and idle (its CPU at or below
    /// `REXEC_SERVER_IDLE_CPU`), RFC 3339; absent while it is busy or not ready.
    pub idle_since: Option<String>,
    pub idle_seconds: Option<u64>,
    /// What the server's container requests and may use at most, as its pod says; absent
    /// without a pod.
    pub resources: Option<Resources>,
}

impl From<Server> for ServerView {
    fn from(server: Server) -> Self {
        let since = |t: std::time::SystemTime| server.seen.duration_since(t).ok().map(|d| d.as_secs());
        Self {
            age_seconds: server.created.and_then(since),
            idle_seconds: server.idle_since.and_then(since),
            created: server.created.map(rfc3339),
            idle_since: server.idle_since.map(rfc3339),
            owner: server.owner,
            username: server.username,
            namespace: server.namespace,
            name: server.name,
            phase: server.phase,
            stage: server.stage,
            ready: server.ready,
            reason: server.reason,
            progress: server.progress,
            python_version: server.python_version,
            versions: server.versions,
            requirements: server.requirements,
            digest: server.digest,
            generation: server.generation,
            resources: server.resources,
        }
    }
}

/// One page of every caller's server (`GET /servers`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerPage {
    pub servers: Vec<ServerView>,
    /// Sent back as `continue`, it gives the next page; absent on the last. A page may hold
    /// fewer servers than asked for, even none, when a phase is chosen: follow it to the end.
    #[serde(rename = "continue")]
    pub next: Option<String>,
}

impl From<Page> for ServerPage {
    fn from(page: Page) -> Self {
        Self {
            servers: page.servers.into_iter().map(ServerView::from).collect(),
            next: page.next,
        }
    }
}

/// What a removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Terminated {
    /// The server is being removed.
    Deleted,
    /// A removal was already under way.
    AlreadyTerminating,
    /// There was nothing to remove.
    NothingThere,
}

impl From<spawner::Terminated> for Terminated {
    fn from(outcome: spawner::Terminated) -> Self {
        match outcome {
            spawner::Terminated::Deleted => Self::Deleted,
            spawner::Terminated::AlreadyTerminating => Self::AlreadyTerminating,
            spawner::Terminated::NothingThere => Self::NothingThere,
        }
    }
}

/// The form of `DELETE /terminate`: its one field, or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TokenForm {
    /// The caller's token, when no Authorization header is sent.
    token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TerminateAnswer {
    #[serde(rename = "Status")]
    #[schema(example = "Your rexec server is being removed.")]
    pub status: String,
    #[serde(rename = "Username")]
    pub username: String,
    /// Whether a server was there to remove (or already being removed).
    pub deleted: bool,
    pub outcome: Terminated,
    /// The `sub` whose server it is.
    pub owner: String,
    pub namespace: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrokerConfig {
    #[schema(example = "broker.example.org")]
    pub broker_external_host: String,
    #[schema(example = 5559)]
    pub broker_external_port: u16,
    /// `host:port`.
    #[schema(example = "broker.example.org:5559")]
    pub broker_external_url: String,
    /// The spawn route, for the client's later calls.
    #[schema(example = "https://api.example.org/rexec/spawn")]
    pub api_url: String,
}

/// The answers of the removal routes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum TerminateResponses {
    /// Removed, being removed, or nothing to remove; an entry of the audit trail names who
    /// removed it (`admin_delete` for an administrator).
    #[response(status = 200)]
    Done(TerminateAnswer),
    /// A body other than the form of the field `token`; on the administrators' route, an owner
    /// of more than 255 bytes or with control characters.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or a token that was refused.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller is in no allowed group; on the administrators' route, not an administrator
    /// (`not_admin`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A namespace of the server's name is not managed for its owner.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// A body larger than 256 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A body that is not a form.
    #[response(status = 415)]
    NotAForm(ErrorBody),
    /// The identity service or the cluster is unreachable.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Create, reuse or replace the caller's rexec-server.
#[utoipa::path(
    post,
    path = "/spawn",
    operation_id = "spawn",
    tag = "server",
    security(("bearer" = [])),
    request_body(content(
        (SpawnForm = "application/x-www-form-urlencoded"),
        (SpawnJson = "application/json"),
    )),
    responses(
        (status = 201, description = "Created, or replaced (`force_reinstall`, or a failed or terminated server), and ready: connected to the broker.", body = SpawnAnswer),
        (status = 200, description = "Reused: the server runs these requirements already, and is ready.", body = SpawnAnswer),
        (status = 202, description = "Created, reused or replaced, and not ready when the spawn's wait (REXEC_SPAWN_WAIT_SECONDS) ended: `server.stage` says where it is; GET /server follows it.", body = SpawnAnswer),
        (status = 400, description = "A bad requirement (the line and the reason), no python==X.Y pin, a bad field.", body = ErrorBody),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 409, description = "A server with other requirements runs (send force_reinstall=True); the previous one is still being removed or the quota has no room yet (Retry-After); a namespace of that name is not yours.", body = ErrorBody),
        (status = 413, description = "Too many requirements, or a body too large.", body = ErrorBody),
        (status = 415, description = "Neither a form nor JSON.", body = ErrorBody),
        (status = 429, description = "You spawned more often than the service allows (`too_many_spawns`), or a new environment cannot be built now: a build you started has not ended (`build_in_progress`), or as many builds run as the service allows (`builds_busy`). Retry-After says when to try again.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 422, description = "The server failed (its requirements cannot be installed, its image cannot be pulled, no node can run it, it crashed, or it was not ready within REXEC_START_TIMEOUT): the reason, with the installer's last lines. A spawn again tries anew.", body = ErrorBody),
        (status = 503, description = "The identity service or the cluster is unreachable.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn spawn() {}

/// Remove the caller's rexec-server (the published clients' route).
#[utoipa::path(
    delete,
    path = "/terminate",
    operation_id = "terminate",
    tag = "server",
    security(("bearer" = [])),
    request_body(content((Option<TokenForm> = "application/x-www-form-urlencoded")), description = "The token, when no Authorization header is sent; no body with the header."),
    responses(TerminateResponses)
)]
#[allow(dead_code)]
fn terminate() {}

/// Remove the caller's rexec-server.
#[utoipa::path(
    delete,
    path = "/server",
    operation_id = "delete_server",
    tag = "server",
    security(("bearer" = [])),
    responses(TerminateResponses)
)]
#[allow(dead_code)]
fn delete_server() {}

/// The caller's rexec-server.
#[utoipa::path(
    get,
    path = "/server",
    operation_id = "get_server",
    tag = "server",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's server.", body = ServerView),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 404, description = "The caller has no server.", body = ErrorBody),
        (status = 409, description = "A namespace of the caller's server's name is not the caller's.", body = ErrorBody),
        (status = 503, description = "The identity service or the cluster is unreachable.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_server() {}

/// Where clients reach the broker.
#[utoipa::path(
    get,
    path = "/broker-config",
    operation_id = "broker_config",
    tag = "broker",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The broker's external address.", body = BrokerConfig),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is in no allowed group.", body = ErrorBody),
        (status = 503, description = "The broker's address is not known yet, or a service is unreachable.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn broker_config() {}

/// Every caller's rexec-server, a page at a time (administrators only).
#[utoipa::path(
    get,
    path = "/servers",
    operation_id = "list_servers",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("phase" = Option<Phase>, Query, description = "Only the servers in this phase (any case)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "How many servers' records a page reads, 1 to 100 (default 50)."),
        ("continue" = Option<String>, Query, min_length = 1, description = "The `continue` of the previous page, as it gave it: any other is refused with 400."),
    ),
    responses(
        (status = 200, description = "A page of servers, in the order of their namespaces; `continue` gives the next. Servers terminated and gone are not shown. `reason` is read from the pod's status; GET /servers/{owner} adds its Events.", body = ServerPage),
        (status = 400, description = "An unknown or repeated query parameter, a phase that does not exist, a limit out of range, or a continue token that is invalid or has expired (list again from the first page).", body = ErrorBody),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is not an administrator (`not_admin`) or in no allowed group.", body = ErrorBody),
        (status = 503, description = "The identity service or the cluster is unreachable.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_servers() {}

/// One caller's rexec-server (administrators only).
#[utoipa::path(
    get,
    path = "/servers/{owner}",
    operation_id = "get_server_of_owner",
    tag = "admin",
    security(("bearer" = [])),
    params(("owner" = String, Path, description = "The owner's `sub`, as `owner` in the list.")),
    responses(
        (status = 200, description = "The owner's server, as the owner sees it with GET /server.", body = ServerView),
        (status = 400, description = "An owner of more than 255 bytes or with control characters.", body = ErrorBody),
        (status = 401, description = "No token, or a token that was refused.", body = ErrorBody),
        (status = 403, description = "The caller is not an administrator (`not_admin`) or in no allowed group.", body = ErrorBody),
        (status = 404, description = "The owner has no server.", body = ErrorBody),
        (status = 409, description = "A namespace of the owner's server's name is not managed for them.", body = ErrorBody),
        (status = 503, description = "The identity service or the cluster is unreachable.", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_server_of_owner() {}

/// Remove one caller's rexec-server (administrators only), as their terminate would.
#[utoipa::path(
    delete,
    path = "/servers/{owner}",
    operation_id = "delete_server_of_owner",
    tag = "admin",
    security(("bearer" = [])),
    params(("owner" = String, Path, description = "The owner's `sub`, as `owner` in the list.")),
    responses(TerminateResponses)
)]
#[allow(dead_code)]
fn delete_server_of_owner() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rexec Deployment API",
        description = "Create, inspect and remove the caller's personal rexec-server, and find the broker.",
    ),
    servers((url = "/rexec")),
    paths(spawn, terminate, delete_server, get_server, broker_config, list_servers, get_server_of_owner, delete_server_of_owner),
    tags(
        (name = "server", description = "The caller's own rexec-server."),
        (name = "broker", description = "Where clients reach the broker."),
        (name = "admin", description = "The administrators' tier: callers in a group of ADMIN_GROUP_NAMES see and remove every caller's server. Everyone else gets 403 `not_admin`."),
    ),
    components(schemas(ErrorBody, TerminateAnswer)),
    modifiers(&BearerSecurity),
)]
struct RexecApi;

/// The document, built from the contract.
pub static OPENAPI: LazyLock<Document> = LazyLock::new(|| super::versioned(RexecApi::openapi()));

/// The document as published (see [`super`]).
pub const PUBLISHED: super::Published = super::Published {
    title: "Rexec Deployment API",
    json: include_str!("../../../openapi/rexec.json"),
};

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_servers_times_are_written_in_rfc_3339_and_counted_to_when_it_was_read() {
        let seen = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let server = Server {
            owner: "u-1".into(),
            username: Some("alice".into()),
            namespace: "rexec-u-1".into(),
            name: "rexec-server-2".into(),
            phase: Phase::Ready,
            stage: Stage::Ready,
            ready: true,
            reason: None,
            progress: None,
            python_version: "3.11".into(),
            versions: None,
            requirements: vec!["python==3.11".into()],
            digest: "d".into(),
            generation: 2,
            created: Some(seen - Duration::from_secs(3600)),
            idle_since: Some(seen - Duration::from_secs(600)),
            resources: None,
            seen,
        };
        let view = ServerView::from(server.clone());
        assert_eq!(view.created.as_deref(), Some("2027-01-15T07:00:00Z"));
        assert_eq!((view.age_seconds, view.idle_seconds), (Some(3600), Some(600)));
        assert_eq!(view.idle_since.as_deref(), Some("2027-01-15T07:50:00Z"));
        // A clock that went back: no age rather than a wrong one.
        let later = ServerView::from(Server {
            created: Some(seen + Duration::from_secs(5)),
            idle_since: None,
            ..server
        });
        assert_eq!(
            (later.age_seconds, later.idle_seconds, later.idle_since),
            (None, None, None)
        );
        assert_eq!(
            serde_json::to_value(Terminated::from(spawner::Terminated::NothingThere)).unwrap(),
            "nothing_there"
        );
        assert_eq!(
            serde_json::to_value(Spawned::from(spawn_plan::Spawned::Replaced)).unwrap(),
            "replaced"
        );
    }
}
