//! The EC2 forensics playbook as a library: the Case document, the finding
//! parsers, the response policy, and the logic of every step. The Lambdas in
//! `functions/` and the `ec2-forensics` CLI are thin adapters over it.

pub mod actions;
pub mod capture_metadata;
pub mod case;
pub mod custody;
pub mod dispatch;
pub mod error;
pub mod findings;
pub mod isolate;
pub mod lambda;
pub mod policy;
pub mod protect;
pub mod release;
pub mod responder;
pub mod triage;

pub use case::Case;
pub use error::{PlaybookError, Result};
pub use responder::Responder;
