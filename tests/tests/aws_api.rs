//! The functions' AWS calls, through the AWS SDK and aws-config's credential chain: against
//! moto's server checking every signature (as AWS does), with the data made by boto3; with
//! credentials from a profile file and from a `credential_process`, counted as they refresh;
//! and the SDK's retries, against a server failing on purpose.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use rexec_shared::aws;
use rexec_shared::cluster::eks::EksConnector;
use rexec_tests::moto::MotoServer;
use serde_json::json;

/// A folder of the temporary directory, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("rexec-aws-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An AWS config file at `path` whose profile `rexec` holds `settings`.
fn profile_files(path: &Path, settings: &str) -> EnvConfigFiles {
    std::fs::write(path, format!("[profile rexec]\n{settings}\n")).unwrap();
    EnvConfigFiles::builder()
        .with_file(EnvConfigFileKind::Config, path)
        .build()
}

#[tokio::test]
async fn moto_checking_signatures_accepts_ours_and_refuses_a_wrong_key() {
    let (moto, credentials) = MotoServer::start_checking_signatures().await;
    moto.put_secret("rexec/introspection", "s3cret").await;
    let (endpoint, _) = moto.create_cluster("ndp").await;

    let config = moto
        .loader()
        .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
        .load()
        .await;
    let secret = aws::secret_string(&config, "rexec/introspection").await.unwrap();
    assert_eq!(secret.as_deref(), Some("s3cret"));
    let missing = aws::secret_string(&config, "no/such/secret").await.unwrap_err();
    assert!(missing.to_string().contains("ResourceNotFoundException"), "{missing}");
    let (url, ca) = aws::describe_cluster(&config, "ndp").await.unwrap();
    assert_eq!(url.as_deref(), Some(endpoint.as_str()), "a signed REST GET");
    assert!(ca.is_some());

    let wrong = Credentials::new(credentials.access_key_id(), "not-the-secret", None, None, "test");
    let wrong = moto
        .loader()
        .credentials_provider(SharedCredentialsProvider::new(wrong))
        .load()
        .await;
    let refused = aws::secret_string(&wrong, "rexec/introspection").await.unwrap_err();
    assert!(!refused.to_string().contains("s3cret"), "{refused}");
    let refused = aws::describe_cluster(&wrong, "ndp").await.unwrap_err();
    assert!(refused.to_string().contains("DescribeCluster"), "{refused}");
}

#[tokio::test]
async fn describe_cluster_takes_the_credentials_of_a_named_profile() {
    let (moto, credentials) = MotoServer::start_checking_signatures().await;
    let (endpoint, ca) = moto.create_cluster("ndp").await;
    let folder = Folder::new();
    let files = profile_files(
        &folder.0.join("config"),
        &format!(
            "aws_access_key_id = {}\naws_secret_access_key = {}",
            credentials.access_key_id(),
            credentials.secret_access_key()
        ),
    );
    let config = moto.loader().profile_files(files).profile_name("rexec").load().await;
    let connector = EksConnector::with_aws("ndp".into(), config);
    let described = connector.endpoint().await.unwrap();
    assert_eq!((described.url, described.ca), (endpoint, ca));

    let other = profile_files(
        &folder.0.join("other"),
        &format!(
            "aws_access_key_id = {}\naws_secret_access_key = wrong",
            credentials.access_key_id()
        ),
    );
    let config = moto.loader().profile_files(other).profile_name("rexec").load().await;
    assert!(EksConnector::with_aws("ndp".into(), config).endpoint().await.is_err());
}

#[tokio::test]
async fn credentials_from_a_credential_process_are_fetched_again_as_they_expire() {
    let (moto, credentials) = MotoServer::start_checking_signatures().await;
    moto.create_cluster("ndp").await;
    let folder = Folder::new();
    let calls = folder.0.join("calls");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Valid for 16 s: the SDK fetches credentials again 10 s (and up to 5 s more) before they
    // expire, so they are reused at once and fetched again 12 s later.
    let process = format!(
        "credential_process = {} {} {} {} {} 16",
        manifest.join("../.venv/tools/bin/python").display(),
        manifest.join("aws/credential_process.py").display(),
        calls.display(),
        credentials.access_key_id(),
        credentials.secret_access_key(),
    );
    let files = profile_files(&folder.0.join("config"), &process);
    let config = moto.loader().profile_files(files).profile_name("rexec").load().await;
    let count = || std::fs::read_to_string(&calls).unwrap_or_default().lines().count();

    assert_eq!(count(), 0, "nothing is fetched before the first call");
    for _ in 0..2 {
        aws::describe_cluster(&config, "ndp").await.unwrap();
    }
    assert_eq!(count(), 1, "fetched once, then reused while valid");
    tokio::time::sleep(Duration::from_secs(12)).await;
    aws::describe_cluster(&config, "ndp").await.unwrap();
    assert_eq!(count(), 2, "fetched again before they expire");
}

/// A server answering each request with the next of `statuses` (Secrets Manager's error of each
/// status), and counting the requests.
async fn failing_server(statuses: &[u16]) -> (String, Arc<Mutex<VecDeque<u16>>>) {
    let left = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<_>>()));
    let answer = |State(left): State<Arc<Mutex<VecDeque<u16>>>>| async move {
        let status = left.lock().unwrap().pop_front().unwrap_or(500);
        let kind = match status {
            200 => return (StatusCode::OK, axum::Json(json!({ "SecretString": "s3cret" }))),
            429 => "ThrottlingException",
            400 => "InvalidParameterException",
            403 => "AccessDeniedException",
            _ => "InternalServiceError",
        };
        let body = json!({ "__type": format!("com.amazonaws.secretsmanager#{kind}"), "message": "failed on purpose" });
        (StatusCode::from_u16(status).unwrap(), axum::Json(body))
    };
    let app = Router::new().fallback(answer).with_state(left.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, left)
}

#[tokio::test]
async fn throttled_and_failed_calls_are_tried_three_times_and_refusals_once() {
    let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    for (statuses, succeeds, made, kind) in [
        (vec![503, 429, 200], true, 3, ""),
        (vec![500, 503, 502, 200], false, 3, "InternalServiceError"),
        (vec![400, 200], false, 1, "InvalidParameterException"),
        (vec![403, 200], false, 1, "AccessDeniedException"),
    ] {
        let (url, left) = failing_server(&statuses).await;
        let config = rexec_shared::aws::loader()
            .empty_test_environment()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
            .load()
            .await;
        let answer = aws::secret_string(&config, "s").await;
        assert_eq!(answer.is_ok(), succeeds, "{statuses:?}: {answer:?}");
        assert_eq!(statuses.len() - left.lock().unwrap().len(), made, "{statuses:?}");
        if let Err(err) = answer {
            assert!(err.to_string().contains(kind), "{err}");
            assert!(err.to_string().contains("failed on purpose"), "{err}");
        }
    }
}
