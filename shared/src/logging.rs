//! Structured JSON logs through `tracing`, one call per function.

use tracing_subscriber::EnvFilter;

/// JSON lines on stdout (CloudWatch), level from `RUST_LOG` (default `info`). Each line carries
/// the fields of the request span it was written in: `request_id`, `method`, `route`, `sub`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .try_init();
}
