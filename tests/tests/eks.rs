//! The EKS token: what botocore's presigner makes, and accepted by a stand-in that checks EKS
//! tokens (DescribeCluster against moto is in `eks_cluster.rs`, which sets the environment).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use rexec_shared::cluster::ClusterError;
use rexec_shared::cluster::eks::{EksConnector, TOKEN_PREFIX, token};
use rexec_stand_ins::kube::{KubeStandIn, TokenCheck};

fn credentials() -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzEXAMPLE".into()),
        None,
        "test",
    )
}

/// The presigned URL of a token, as (base, sorted query).
fn decode(token: &str) -> (String, BTreeMap<String, String>) {
    let url = URL_SAFE_NO_PAD
        .decode(token.strip_prefix(TOKEN_PREFIX).expect("the EKS prefix"))
        .expect("base64url, unpadded");
    let url = url::Url::parse(std::str::from_utf8(&url).unwrap()).unwrap();
    let base = format!("{}://{}{}", url.scheme(), url.host_str().unwrap(), url.path());
    (base, url.query_pairs().into_owned().collect())
}

/// The token botocore's presigner makes for `cluster`, signed with `creds` at `unix`.
fn botocore_token(creds: &Credentials, region: &str, cluster: &str, unix: u64) -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/tools/bin/python");
    assert!(
        python.exists(),
        "the tools venv is not installed: run `make deps` (make test does)"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eks/botocore_token.py");
    // A clean environment: botocore would follow AWS_ENDPOINT_URL, AWS_PROFILE or ~/.aws.
    let home = std::env::temp_dir().join(format!("rexec-botocore-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let output = Command::new(&python)
        .env_clear()
        .env("HOME", &home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg(&script)
        .args([
            creds.access_key_id(),
            creds.secret_access_key(),
            creds.session_token().unwrap_or_default(),
            region,
            cluster,
        ])
        .arg(unix.to_string())
        .output()
        .expect("run botocore");
    let _ = std::fs::remove_dir_all(&home);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_token_is_what_botocore_presigns() {
    let creds = credentials();
    for (region, cluster, unix) in [
        ("us-east-1", "ndp", 1_795_380_000u64),
        ("eu-west-2", "rexec-prod", 1_800_000_123),
    ] {
        let theirs = botocore_token(&creds, region, cluster, unix);
        let ours = token(&creds, region, cluster, UNIX_EPOCH + Duration::from_secs(unix)).unwrap();
        assert_eq!(decode(&ours), decode(&theirs), "{region} {cluster}");
        assert!(!ours.ends_with('='));
    }
}

/// Whether the cluster answers a list of namespaces made with `token`.
async fn lists_with(cluster: &KubeStandIn, token: String) -> Result<(), ClusterError> {
    let mut config = kube::Config::new(cluster.url().parse().unwrap());
    config.auth_info.token = Some(token.into());
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .map(drop)
        .map_err(ClusterError::from)
}

/// The stand-in verifies SigV4 by itself, from the specification: botocore's tokens are
/// accepted for its cluster and credentials, and refused for anything else.
#[tokio::test]
async fn a_cluster_that_checks_eks_tokens_accepts_botocores_for_its_cluster_and_credentials_only() {
    let cluster = KubeStandIn::start().await;
    cluster.require_token(TokenCheck::Eks {
        cluster: "ndp".into(),
        region: "us-east-1".into(),
        credentials: credentials(),
    });
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let ours = credentials();
    let with = |secret: &str, session: &str| {
        Credentials::new(ours.access_key_id(), secret, Some(session.into()), None, "test")
    };
    let other_secret = with("another secret", ours.session_token().unwrap());
    let other_session = with(ours.secret_access_key(), "another session");
    for (creds, region, name, accepted) in [
        (credentials(), "us-east-1", "ndp", true),
        (credentials(), "us-east-1", "another", false),
        (credentials(), "eu-west-2", "ndp", false),
        (other_secret, "us-east-1", "ndp", false),
        (other_session, "us-east-1", "ndp", false),
    ] {
        let result = lists_with(&cluster, botocore_token(&creds, region, name, now)).await;
        assert_eq!(result.is_ok(), accepted, "{region} {name}: {result:?}");
    }
    let tampered = botocore_token(&credentials(), "us-east-1", "ndp", now - 60);
    let (base, mut query) = decode(&tampered);
    query.insert("X-Amz-Expires".into(), "900".into());
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    let tampered = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(format!("{base}?{query}")));
    assert!(
        lists_with(&cluster, tampered).await.is_err(),
        "a parameter changed after signing"
    );
}

#[tokio::test]
async fn a_cluster_that_checks_eks_tokens_accepts_ours_for_its_name_only() {
    let cluster = KubeStandIn::start().await;
    cluster.require_token(TokenCheck::Eks {
        cluster: "ndp".into(),
        region: "us-east-1".into(),
        credentials: credentials(),
    });
    for (name, accepted) in [("ndp", true), ("another", false)] {
        let aws = aws_config::SdkConfig::builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                credentials(),
            ))
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let token = EksConnector::with_aws(name.into(), aws).token().await.unwrap();
        let result = lists_with(&cluster, token).await;
        assert_eq!(result.is_ok(), accepted, "{name}: {result:?}");
    }
    let stale = token(
        &credentials(),
        "us-east-1",
        "ndp",
        SystemTime::now() - Duration::from_secs(16 * 60),
    )
    .unwrap();
    let result = lists_with(&cluster, stale).await;
    assert!(
        matches!(result, Err(ClusterError::Unavailable(_))),
        "an expired token is refused"
    );
}
