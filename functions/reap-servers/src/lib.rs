//! On a schedule (EventBridge): one run of the reaper (see `rexec_shared::server::reaper`),
//! stopped in time to report before the invocation's deadline.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_http::{Error, LambdaEvent};
use rexec_shared::config::{ConfigError, Vars};
use rexec_shared::metrics;
use rexec_shared::server::reaper::{Reaper, Report};

/// Time kept at the end of an invocation for the actions under way and the report.
const MARGIN: Duration = Duration::from_secs(10);

pub struct Deps {
    pub reaper: Reaper,
}

impl Deps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            reaper: Reaper::from_vars(vars)?,
        })
    }
}

/// One run, whatever the scheduled event holds.
pub async fn handler(deps: &Deps, event: LambdaEvent<serde_json::Value>) -> Result<Report, Error> {
    let now = SystemTime::now();
    let left = Duration::from_millis(event.context.deadline)
        .saturating_sub(now.duration_since(UNIX_EPOCH).unwrap_or_default())
        .saturating_sub(MARGIN);
    // Boxed: the run is a deep future, and the runtime's own nests it further.
    let report = Box::pin(metrics::scope(deps.reaper.run(now, Instant::now() + left))).await?;
    tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "reaper run");
    Ok(report)
}
