//! Structured logs through `tracing`, one call per function, and the metric lines of
//! [`crate::metrics`] written as they are. The level and format follow Lambda's logging controls
//! as the Lambda runtime's own subscriber reads them.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Vars;
use crate::metrics;

/// Log lines on stdout (CloudWatch), as `vars`' [`LogSettings`] say.
pub fn init(vars: &Vars) {
    let settings = LogSettings::from_vars(vars);
    let _ = tracing::subscriber::set_global_default(subscriber_with(&settings, std::io::stdout));
}

/// How a function logs: the level from `AWS_LAMBDA_LOG_LEVEL` (Lambda's logging controls), else
/// `RUST_LOG` (directives such as `info,kube=debug`), else `info`; text lines when
/// `AWS_LAMBDA_LOG_FORMAT` is `Text`, JSON lines otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub filter: String,
    pub json: bool,
}

impl LogSettings {
    pub fn from_vars(vars: &Vars) -> Self {
        let filter = match vars.get("AWS_LAMBDA_LOG_LEVEL").or_else(|| vars.get("RUST_LOG")) {
            // Lambda's levels are tracing's, and FATAL, which tracing has not: its errors.
            Some(level) if level.eq_ignore_ascii_case("fatal") => "error".to_owned(),
            Some(level) => level.to_owned(),
            None => "info".to_owned(),
        };
        let json = !vars
            .get("AWS_LAMBDA_LOG_FORMAT")
            .is_some_and(|format| format.eq_ignore_ascii_case("text"));
        LogSettings { filter, json }
    }
}

/// The subscriber of every function, writing to `writer` as the environment's [`LogSettings`]
/// say.
pub fn subscriber<W>(writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_with(&LogSettings::from_vars(&Vars::from_env()), writer)
}

/// The subscriber for `settings`. Each line carries the fields of the request span it was
/// written in: `request_id`, `method`, `route`, and `sub` once known. The metric lines are
/// written whatever the level, and as their EMF documents in either format. A directive the
/// filter cannot read is left out, never fatal.
pub fn subscriber_with<W>(settings: &LogSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .parse_lossy(&settings.filter)
        .add_directive(format!("{}=info", metrics::TARGET).parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    if settings.json {
        let json = tracing_subscriber::fmt::format()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_target(false);
        Box::new(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(WithMetrics(json))
                .finish(),
        )
    } else {
        // Lambda stamps each line with its time and request id.
        let text = tracing_subscriber::fmt::format().without_time().with_target(false);
        Box::new(
            builder
                .fmt_fields(DefaultFields::new())
                .event_format(WithMetrics(text))
                .finish(),
        )
    }
}

/// Log lines in the format `F`, except the metric lines, written as the EMF documents they hold.
struct WithMetrics<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithMetrics<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn lambdas_logging_controls_come_before_rust_log() {
        let settings = |pairs: &[(&str, &str)]| LogSettings::from_vars(&Vars::from_pairs(pairs.iter().copied()));
        let expect = |filter: &str, json: bool| LogSettings {
            filter: filter.into(),
            json,
        };
        assert_eq!(settings(&[]), expect("info", true));
        assert_eq!(
            settings(&[("RUST_LOG", "info,kube=debug")]),
            expect("info,kube=debug", true)
        );
        assert_eq!(
            settings(&[("RUST_LOG", "error"), ("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]),
            expect("DEBUG", true)
        );
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]), expect("error", true));
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_LEVEL", " ")]), expect("info", true));
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]), expect("info", false));
        assert_eq!(settings(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]), expect("info", true));
    }

    /// The lines `settings`' subscriber writes for a debug line, an info line and a metric line.
    fn written(settings: LogSettings) -> Vec<String> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let make = move || Sink(sink.clone());
        tracing::subscriber::with_default(subscriber_with(&settings, make), || {
            tracing::debug!(detail = 1, "a detail");
            tracing::info!(sub = "user-001", "served");
            tracing::info!(target: metrics::TARGET, emf = r#"{"_aws":{}}"#);
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_and_text_lines_at_the_level_chosen_with_metric_lines_as_they_are() {
        let json = written(LogSettings::from_vars(&Vars::default()));
        assert_eq!(json.len(), 2, "{json:?}");
        let line: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
        assert_eq!(
            (line["level"].as_str(), line["sub"].as_str()),
            (Some("INFO"), Some("user-001"))
        );
        assert_eq!(json[1], r#"{"_aws":{}}"#);

        let text = written(LogSettings::from_vars(&Vars::from_pairs([
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
        ])));
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("DEBUG") && text[0].contains("a detail detail=1"),
            "{text:?}"
        );
        assert!(text[1].contains("served sub=\"user-001\""), "{text:?}");
        assert!(!text[1].contains('\u{1b}'), "no colours: {text:?}");
        assert_eq!(text[2], r#"{"_aws":{}}"#);

        let quiet = written(LogSettings::from_vars(&Vars::from_pairs([(
            "AWS_LAMBDA_LOG_LEVEL",
            "ERROR",
        )])));
        assert_eq!(quiet, [r#"{"_aws":{}}"#], "metric lines whatever the level");

        let unreadable = written(LogSettings::from_vars(&Vars::from_pairs([("RUST_LOG", "info,[{bad")])));
        assert_eq!(
            unreadable.len(),
            2,
            "a directive it cannot read is left out: {unreadable:?}"
        );
    }
}
