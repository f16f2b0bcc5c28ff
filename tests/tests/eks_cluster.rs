//! `DescribeCluster` through the production path: `EKS_CLUSTER_NAME` set, and the AWS SDK
//! configured from the environment with `AWS_ENDPOINT_URL` pointing at moto's server. A test
//! binary of its own, as it sets process environment variables.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use rexec_shared::cluster::eks::{EksConnector, TOKEN_PREFIX};
use rexec_shared::cluster::{Cluster, ClusterError};
use rexec_shared::config::Vars;
use rexec_tests::moto::MotoServer;

fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        )))
        .endpoint_url(endpoint)
        .build()
}

#[tokio::test]
async fn describe_cluster_through_moto_gives_the_endpoint_and_ca() {
    let moto = MotoServer::start().await;
    moto.export_environment();
    let sdk = sdk_config(&moto.url);
    aws_sdk_eks::Client::new(&sdk)
        .create_cluster()
        .name("ndp")
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-1")
                .build(),
        )
        .send()
        .await
        .expect("create the cluster in moto");
    let described = aws_sdk_eks::Client::new(&sdk)
        .describe_cluster()
        .name("ndp")
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();

    let connector = EksConnector::new("ndp".into());
    let endpoint = connector.endpoint().await.unwrap();
    assert_eq!(Some(endpoint.url.as_str()), described.endpoint.as_deref());
    assert!(endpoint.url.starts_with("https://"), "{}", endpoint.url);
    assert_eq!(
        Some(endpoint.ca.as_str()),
        described.certificate_authority.and_then(|ca| ca.data).as_deref()
    );
    assert!(connector.token().await.unwrap().starts_with(TOKEN_PREFIX));

    // moto's CA is random text, not the base64 PEM EKS returns: refused, not trusted, and the
    // function answers 503 instead of calling an unverified endpoint.
    let cluster = Cluster::from_vars(&Vars::from_pairs([("EKS_CLUSTER_NAME", "ndp")])).unwrap();
    assert!(matches!(cluster.client().await, Err(ClusterError::Unavailable(_))));

    let missing = EksConnector::new("no-such-cluster".into());
    assert!(matches!(missing.endpoint().await, Err(ClusterError::Unavailable(_))));
}
