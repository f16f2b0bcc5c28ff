//! The AWS API through moto's server (PyPI `moto[server]`, in the tools venv), on 127.0.0.1.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub struct MotoServer {
    pub url: String,
    _child: Child,
}

impl MotoServer {
    pub async fn start() -> Self {
        let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/tools/bin/moto_server");
        assert!(
            binary.exists(),
            "moto is not installed: run `make deps` (make test does)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { url, _child: child }
    }

    /// Points the AWS SDK of this process at moto through the standard environment
    /// (`AWS_ENDPOINT_URL`, region, credentials), as the functions are configured on AWS.
    ///
    /// Only for a test binary of its own: every thread and child process sees the change.
    pub fn export_environment(&self) {
        // SAFETY: called by the only test of its binary, before anything reads the environment.
        unsafe {
            std::env::set_var("AWS_ENDPOINT_URL", &self.url);
            std::env::set_var("AWS_REGION", "us-east-1");
            std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
        }
    }
}
