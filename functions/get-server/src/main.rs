use get_server::{Deps, handler};
use rexec_shared::config::Vars;
use rexec_shared::{logging, serve};

#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    logging::init();
    let deps: &'static Deps = Box::leak(Box::new(
        Deps::from_vars(&Vars::from_env()).map_err(serve::init_failed)?,
    ));
    serve::run(move |req| handler(deps, req)).await
}
