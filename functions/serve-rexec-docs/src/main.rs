#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::serve::main(serve_rexec_docs::handler).await
}
