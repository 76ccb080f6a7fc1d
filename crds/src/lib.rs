//! The Siren API: what a user writes (`TrainingJob` spec), what the driver reports (status), and the
//! versioned JSON contract between the driver and its functions (tasks and results).

pub mod manifest;
pub mod spec;
pub mod status;
pub mod task;
pub mod validate;

pub use manifest::{ManifestError, parse_manifest, read_manifest};
pub use spec::*;
pub use status::*;
pub use task::*;
pub use validate::{FieldError, ValidationErrors};
