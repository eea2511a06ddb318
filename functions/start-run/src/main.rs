//! start-run Lambda, behind a function URL with AWS_IAM auth: a person starts a bulk run; AWS authenticates the requester, the function records them and MACs the run for its plan step.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::bulk::start::start_from_url_event(&responder, input).await
    })
    .await
}
