//! The EC2 forensics playbook as a library. The Lambdas in `functions/` and
//! the `ec2-forensics` CLI are thin adapters over it.
//!
//! - [`case`]: the Case document and its sections, pure data;
//! - [`findings`]: every trigger's shape, into one incident;
//! - [`policy`]: the decision on what to do about it;
//! - [`aws`]: clients, retries, and the record of each change;
//! - [`steps`]: one module per playbook step.

pub mod aws;
pub mod case;
pub mod error;
pub mod findings;
pub mod policy;
pub mod steps;

pub use aws::Responder;
pub use case::Case;
pub use error::{PlaybookError, Result};
