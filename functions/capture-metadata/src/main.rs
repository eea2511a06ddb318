//! capture-metadata Lambda: records everything EC2 knows about the suspect instances, read-only.
use playbook::lambda::serve;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve(|responder, input| async move {
        let case = playbook::Case::from_input(input)?;
        playbook::capture_metadata::capture_metadata(&responder, case).await
    })
    .await
}
