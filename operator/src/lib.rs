//! The Siren job driver and its function backends, shared by the `siren` CLI and the operator.

pub mod backend;
pub mod blocking;
pub mod calibrate;
#[cfg(feature = "cluster")]
pub mod controller;
pub mod driver;
pub mod job;
pub mod job_span;
pub mod learned;
pub mod pricing;
pub mod summary;

pub use driver::{DriverObserver, JobDriver, JobOutcome, RunControl, Silent, StopReason};
pub use job::{driver_for, driver_with_backend};
pub use job_span::job_span;
pub use summary::JobSummary;
