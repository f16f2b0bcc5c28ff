//! `GET /rexec/servers`: every caller's rexec-server, page by page and filtered by phase, for
//! administrators (`ADMIN_GROUP_NAMES`); everyone else gets 403.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use rexec_shared::http::api::rexec::ServerPage;
use rexec_shared::http::error::ApiError;
use rexec_shared::http::request::{self, json};
use rexec_shared::server::audit;
use rexec_shared::server::status::Phase;

/// Claims read for a page unless `limit` says otherwise, and the most `limit` may say.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;
/// The longest `continue` token taken, in bytes.
pub const MAX_CONTINUE_BYTES: usize = 4096;

/// The function's settings, read once: the caller's access and the callers' servers.
pub use rexec_shared::http::servers_deps::ServersDeps as Deps;

/// What a page asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub phase: Option<Phase>,
    pub limit: u32,
    pub next: Option<String>,
}

/// Reads `phase`, `limit` and `continue`, each at most once; any other parameter is a 400, so
/// that a misspelt filter is not taken for no filter.
pub fn page_query(req: &Request) -> Result<PageQuery, ApiError> {
    let mut query = PageQuery {
        phase: None,
        limit: DEFAULT_LIMIT,
        next: None,
    };
    let mut seen = Vec::new();
    for (name, value) in req.query_string_parameters_ref().into_iter().flat_map(|q| q.iter()) {
        let bad = |detail: String| ApiError::bad_request("invalid_query", detail);
        let name = match name {
            "phase" | "limit" | "continue" => name,
            _ => return Err(bad("The query takes `phase`, `limit` and `continue` only.".into())),
        };
        if seen.contains(&name) {
            return Err(bad(format!("Give `{name}` once.")));
        }
        seen.push(name);
        match name {
            "phase" => {
                let phase = Phase::ALL
                    .into_iter()
                    .find(|p| audit::word(p).eq_ignore_ascii_case(value))
                    .ok_or_else(|| bad(format!("`phase` is one of {}.", phases())))?;
                query.phase = Some(phase);
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| bad(format!("`limit` is a whole number from 1 to {MAX_LIMIT}.")))?;
            }
            _ => {
                if value.is_empty() || value.len() > MAX_CONTINUE_BYTES || !value.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(bad(
                        "`continue` is the token of the previous page, as it gave it.".into()
                    ));
                }
                query.next = Some(value.to_owned());
            }
        }
    }
    Ok(query)
}

fn phases() -> String {
    Phase::ALL.iter().map(audit::word).collect::<Vec<_>>().join(", ")
}

/// One page of every caller's server.
pub async fn handler(deps: &Deps, req: Request) -> Result<Response<Body>, ApiError> {
    request::administrator(&deps.access, &req).await?;
    let query = page_query(&req)?;
    let page = deps
        .servers
        .list(query.phase, query.limit, query.next.as_deref())
        .await?;
    Ok(json(StatusCode::OK, &ServerPage::from(page)))
}
