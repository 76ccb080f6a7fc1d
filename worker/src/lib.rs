//! The Siren function: everything a worker needs to turn a task into pushed updates.

pub mod access;
pub mod function;
pub mod logs;
pub mod model;
#[cfg(feature = "http")]
pub mod serve;
pub mod step;

pub use step::{FunctionState, TaskError};
