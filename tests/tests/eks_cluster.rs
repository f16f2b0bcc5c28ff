//! `DescribeCluster` through the production path: `EKS_CLUSTER_NAME` set, and the AWS calls
//! configured from the environment with `AWS_ENDPOINT_URL` pointing at moto's server. A test
//! binary of its own, as it sets process environment variables.

use rexec_shared::cluster::eks::{EksConnector, TOKEN_PREFIX};
use rexec_shared::cluster::{Cluster, ClusterError};
use rexec_shared::config::Vars;
use rexec_tests::moto::MotoServer;

#[tokio::test]
async fn describe_cluster_through_moto_gives_the_endpoint_and_ca() {
    let moto = MotoServer::start().await;
    moto.export_environment();
    let (url, ca) = moto.create_cluster("ndp").await;

    let connector = EksConnector::new("ndp".into());
    let endpoint = connector.endpoint().await.unwrap();
    assert_eq!(endpoint.url, url);
    assert!(endpoint.url.starts_with("https://"), "{}", endpoint.url);
    assert_eq!(endpoint.ca, ca);
    assert!(connector.token().await.unwrap().starts_with(TOKEN_PREFIX));

    // moto's CA is random text, not the base64 PEM EKS returns: refused, not trusted, and the
    // function answers 503 instead of calling an unverified endpoint.
    let cluster = Cluster::from_vars(&Vars::from_pairs([("EKS_CLUSTER_NAME", "ndp")])).unwrap();
    assert!(matches!(cluster.client().await, Err(ClusterError::Unavailable(_))));

    let missing = EksConnector::new("no-such-cluster".into());
    assert!(matches!(missing.endpoint().await, Err(ClusterError::Unavailable(_))));
}
