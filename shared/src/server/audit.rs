//! The audit trail: one JSON log line per change of a server's state, `"message": "audit"`.
//! Its fields are these and no other (never a token): `event` (what happened), `action` (the
//! reaper's rule), `actor` (the caller's `sub`, an administrator's, or `reaper`), `owner` (the `sub` whose server
//! it is), `target` (the namespace), `outcome` and `reason`; a request's line also carries the
//! request's span (`request_id`, `route`), a reaper's line the Lambda invocation's.

/// What happened to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A spawn: created, reused, replaced, failed or refused.
    Spawn,
    /// A caller's terminate.
    Terminate,
    /// An administrator's removal of another caller's server (`DELETE /servers/{owner}`).
    AdminDelete,
    /// A reaper's removal (or, for a failure seen first, its record).
    Reap,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Self::Spawn => "spawn",
            Self::Terminate => "terminate",
            Self::AdminDelete => "admin_delete",
            Self::Reap => "reap",
        }
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub event: Event,
    pub action: Option<&'a str>,
    pub actor: &'a str,
    pub owner: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
}

impl Audit<'_> {
    /// Writes the entry.
    pub fn record(&self) {
        tracing::info!(
            event = self.event.name(),
            action = self.action,
            actor = self.actor,
            owner = self.owner,
            target = self.target,
            outcome = self.outcome,
            reason = self.reason,
            "audit"
        );
    }
}

/// An outcome's word as the API writes it (`created`, `nothing_there`).
pub fn word<T: serde::Serialize>(outcome: &T) -> String {
    match serde_json::to_value(outcome) {
        Ok(serde_json::Value::String(word)) => word,
        _ => String::new(),
    }
}
