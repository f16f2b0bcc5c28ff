use rexec_shared::{logging, serve};

#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    logging::init();
    serve::run(serve_rexec_docs::handler).await
}
