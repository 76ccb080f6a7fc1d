//! The Siren job driver and its function backends, shared by the `siren` CLI and the operator:
//! a TrainingJob is resolved once (`resolve`) into data, scheduler, store and backend, and the
//! driver (`driver`) runs its epochs on that backend (`backend`).

pub mod backend;
pub mod blocking;
pub mod calibrate;
pub mod driver;
pub mod job_span;
pub mod learned;
pub mod pricing;
pub mod resolve;
pub mod summary;

pub use driver::{
    DriverError, DriverObserver, JobDriver, JobOutcome, RunControl, Silent, StopReason,
};
pub use job_span::job_span;
pub use resolve::{
    ResolveError, ResolveOptions, ResolvedJob, driver_for, driver_with_backend, resolve,
};
pub use summary::JobSummary;
