//! The functions' own signed calls to the AWS API: against moto's server checking every
//! signature (as AWS does), with the data made by boto3; and their retries, against a
//! server failing on purpose. moto checks the signatures of JSON-protocol calls (Secrets Manager)
//! but refuses every signed REST `GET` (botocore's too), so `DescribeCluster` is called in
//! `eks_cluster.rs`, on a moto server that takes any signature.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_credential_types::Credentials;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use rexec_shared::aws::{Aws, AwsError, SECRETS_MANAGER};
use rexec_tests::moto::MotoServer;
use serde_json::{Value, json};

/// Secrets Manager's `GetSecretValue` of the secret `id`.
async fn get_secret(aws: &Aws, id: &str) -> Result<Value, AwsError> {
    aws.post(
        SECRETS_MANAGER,
        "secretsmanager.GetSecretValue",
        &json!({ "SecretId": id }),
    )
    .await
}

#[tokio::test]
async fn moto_checking_signatures_accepts_ours_and_refuses_a_wrong_key() {
    let (moto, credentials) = MotoServer::start_checking_signatures().await;
    moto.put_secret("rexec/introspection", "s3cret").await;

    let aws = Aws::new(credentials.clone(), "us-east-1", Some(&moto.url)).unwrap();
    let answer = get_secret(&aws, "rexec/introspection").await.unwrap();
    assert_eq!(answer["SecretString"], "s3cret");
    let missing = get_secret(&aws, "no/such/secret").await.unwrap_err();
    assert!(missing.to_string().contains("ResourceNotFoundException"), "{missing}");

    let wrong = Credentials::new(credentials.access_key_id(), "not-the-secret", None, None, "test");
    let wrong = Aws::new(wrong, "us-east-1", Some(&moto.url)).unwrap();
    let refused = get_secret(&wrong, "rexec/introspection").await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    assert!(!refused.to_string().contains("s3cret"), "{refused}");
}

/// A server answering each request with the next of `statuses`, and counting the requests.
async fn failing_server(statuses: &[u16]) -> (String, Arc<Mutex<VecDeque<u16>>>) {
    let left = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<_>>()));
    let answer = |State(left): State<Arc<Mutex<VecDeque<u16>>>>| async move {
        let status = left.lock().unwrap().pop_front().unwrap_or(500);
        let body = match status {
            200 => json!({ "SecretString": "s3cret" }),
            _ => json!({ "__type": "com.amazonaws.secretsmanager#ThrottlingException", "message": "slow down" }),
        };
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
    for (statuses, succeeds, made) in [
        (vec![503, 429, 200], true, 3),
        (vec![500, 503, 502, 200], false, 3),
        (vec![400, 200], false, 1),
        (vec![403, 200], false, 1),
    ] {
        let (url, left) = failing_server(&statuses).await;
        let aws = Aws::new(credentials.clone(), "us-east-1", Some(&url)).unwrap();
        let answer = get_secret(&aws, "s").await;
        assert_eq!(answer.is_ok(), succeeds, "{statuses:?}: {answer:?}");
        assert_eq!(statuses.len() - left.lock().unwrap().len(), made, "{statuses:?}");
        if let Err(err) = answer {
            let status = statuses[made - 1];
            assert!(err.to_string().contains(&status.to_string()), "{err}");
            assert!(err.to_string().contains("ThrottlingException: slow down"), "{err}");
        }
    }
}
