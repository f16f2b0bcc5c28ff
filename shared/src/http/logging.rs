//! Structured JSON logs through `tracing`, one call per function, and the metric lines of
//! [`crate::metrics`] written as they are.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::metrics;

/// JSON lines on stdout (CloudWatch), level from `RUST_LOG` (default `info`).
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout));
}

/// The subscriber of every function, writing to `writer`. Each line carries the fields of the
/// request span it was written in: `request_id`, `method`, `route`, and `sub` once known. The
/// metric lines are written whatever `RUST_LOG` says.
pub fn subscriber<W>(writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{}=info", metrics::TARGET).parse().expect("a valid directive"));
    let json = tracing_subscriber::fmt::format()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(WithMetrics(json))
        .with_writer(writer)
        .finish()
}

/// JSON log lines, except the metric lines, written as the EMF documents they hold.
struct WithMetrics(Format<Json>);

impl<S, N> FormatEvent<S, N> for WithMetrics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if event.metadata().target() == metrics::TARGET {
            let mut document = Document(None);
            event.record(&mut document);
            if let Some(document) = document.0 {
                return writeln!(writer, "{document}");
            }
        }
        self.0.format_event(ctx, writer, event)
    }
}

/// The `emf` field of a metric line.
struct Document(Option<String>);

impl Visit for Document {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "emf" {
            self.0 = Some(format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "emf" {
            self.0 = Some(value.to_owned());
        }
    }
}
