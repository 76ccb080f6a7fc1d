//! Siren's scheduling decisions, kept free of I/O so they compile fast and test in isolation:
//! what function time costs, and how many functions of which memory size run each epoch.

pub mod budget;
pub mod cost;
pub mod policy;

pub use budget::{BudgetCheck, EpochCostEstimate, PREDICTION_MARGIN, check_budget};
pub use cost::{ClusterPricing, CostModel, LambdaPricing, MB_PER_VCPU};
pub use policy::{Action, Observation, Scheduler, StaticScheduler};
