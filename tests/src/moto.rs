//! The AWS API through moto's server (PyPI `moto[server]`, in the tools venv), on 127.0.0.1,
//! started by `tests/aws/moto_server.py` (which checks a bodiless request's signature as AWS
//! does).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use tokio::process::{Child, Command};

/// A program of the tools venv.
fn venv(program: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/tools/bin")
        .join(program)
}

pub struct MotoServer {
    pub url: String,
    /// What fixtures.py signs with: any, or the user made on a server checking signatures.
    credentials: Credentials,
    _child: Child,
}

impl MotoServer {
    /// A server that takes any credentials.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server that checks every request's signature against its IAM users (and their
    /// policies), and the credentials of a user allowed everything, made for the purpose.
    pub async fn start_checking_signatures() -> (Self, Credentials) {
        // The three calls of `fixtures.py user` are let through unsigned.
        let mut moto = Self::start_with(Some(3)).await;
        let made = moto.boto3(&["user"]).await;
        let mut lines = made.lines();
        let (Some(key), Some(secret)) = (lines.next(), lines.next()) else {
            panic!("fixtures.py user printed no key: {made}");
        };
        moto.credentials = Credentials::new(key, secret, None, None, "moto");
        let credentials = moto.credentials.clone();
        (moto, credentials)
    }

    /// Makes the secret `name`, or puts its new `value`.
    pub async fn put_secret(&self, name: &str, value: &str) {
        self.boto3(&["secret", name, value]).await;
    }

    /// Makes the EKS cluster `name`; its endpoint and CA data, as `DescribeCluster` gives them.
    pub async fn create_cluster(&self, name: &str) -> (String, String) {
        let described: serde_json::Value = serde_json::from_str(&self.boto3(&["cluster", name]).await).unwrap();
        let field = |name: &str| described[name].as_str().unwrap().to_owned();
        (field("endpoint"), field("ca"))
    }

    /// Runs tests/aws/fixtures.py (boto3, not our code) against this server; what it printed.
    async fn boto3(&self, args: &[&str]) -> String {
        // A clean environment: boto3 would follow AWS_PROFILE or ~/.aws. A home of this call's
        // own, removed when it ends.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let home = std::env::temp_dir().join(format!("rexec-boto3-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let output = Command::new(venv("python"))
            .env_clear()
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", self.credentials.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", self.credentials.secret_access_key())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("aws/fixtures.py"))
            .arg(&self.url)
            .args(args)
            .output()
            .await
            .expect("run fixtures.py");
        let _ = std::fs::remove_dir_all(&home);
        assert!(
            output.status.success(),
            "fixtures.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    async fn start_with(unsigned_calls: Option<u32>) -> Self {
        assert!(
            venv("moto_server").exists(),
            "moto is not installed: run `make deps` (make test does)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(venv("python"));
        if let Some(calls) = unsigned_calls {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", calls.to_string());
        }
        let child = command
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("aws/moto_server.py"))
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
        Self {
            url,
            credentials: Credentials::new("AKIDEXAMPLE", "secret", None, None, "moto"),
            _child: child,
        }
    }

    /// The functions' AWS configuration loader, pointed at this server in us-east-1, with
    /// nothing from this process's environment: the test gives the credentials.
    pub fn loader(&self) -> aws_config::ConfigLoader {
        rexec_shared::aws::loader()
            .empty_test_environment()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
    }

    /// Points the AWS calls of this process at moto through the standard environment
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
