//! Capturing the functions' log lines in a test, in the format they are written on Lambda.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::subscriber::DefaultGuard;

#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Captures what the current thread logs until the guard is dropped (use a current-thread
    /// runtime so the request runs on this thread).
    pub fn start() -> (Self, DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let guard = tracing::subscriber::set_default(rexec_shared::http::logging::subscriber(move || writer.clone()));
        (logs, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON log lines"))
            .collect()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
