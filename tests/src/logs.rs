//! Capturing the functions' log lines in a test, in the format they are written on Lambda.
//!
//! One subscriber serves the whole test binary, installed at the first capture: it writes to the
//! capture of the thread the line was logged on, if any. A subscriber per test would race with
//! the other tests' threads over what each log statement is known to be listened to by.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use serde_json::Value;

#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: RefCell<Option<CapturedLogs>> = const { RefCell::new(None) };
}

/// Ends the capture of its thread when dropped.
pub struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Writes a line to the capture of the current thread, or nowhere.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = c.borrow().as_ref() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Captures what the current thread logs until the guard is dropped (use a current-thread
    /// runtime so the request runs on this thread).
    pub fn start() -> (Self, Capturing) {
        static INSTALLED: Once = Once::new();
        INSTALLED.call_once(|| {
            tracing::subscriber::set_global_default(rexec_shared::http::logging::subscriber(|| ThreadWriter))
                .expect("no other subscriber in a test binary");
        });
        let logs = Self::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, Capturing)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line: the log lines and the metric lines (EMF documents).
    fn all(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect()
    }

    /// The log lines.
    pub fn lines(&self) -> Vec<Value> {
        self.all().into_iter().filter(|l| l.get("_aws").is_none()).collect()
    }

    /// The metric lines: CloudWatch embedded metric format documents.
    pub fn metrics(&self) -> Vec<Value> {
        self.all().into_iter().filter(|l| l.get("_aws").is_some()).collect()
    }
}
