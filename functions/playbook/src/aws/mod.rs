//! The AWS plumbing: clients built once, retries with backoff inside a
//! deadline, the Lambda adapter, and the record of each change.

pub mod change;
pub mod clients;
pub mod lambda;
pub mod retry;

pub use change::{apply, attempt, ensure};
pub use clients::{
    identify, init_tracing, Clients, Config, Identity, PolicySource, Responder, Retention, Workload,
};
