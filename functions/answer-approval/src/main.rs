//! answer-approval Lambda, behind a function URL with AWS_IAM auth: a person's approve or deny, with the approver AWS authenticated on the request; reads the task token from the case's execution history.
use playbook::aws::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        playbook::steps::approval::answer_from_url_event(&responder, input).await
    })
    .await
}
