//! bulk Lambda: the bulk state machine's steps (plan, approval, per-VPC preparation, one subnet cut or release per item, the map run's summary).
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::bulk::run::bulk_step(&responder, input).await
    })
    .await
}
