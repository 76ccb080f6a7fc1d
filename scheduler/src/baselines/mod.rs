//! What the DRL agent is measured against, behind the same [`crate::Scheduler`] interface where
//! they are schedulers: a greedy heuristic, Bayesian optimisation over static configurations, the
//! oracles, and a cluster of VMs at the same cost.

pub mod bo;
pub mod greedy;
pub mod oracle;
pub mod planner;
pub mod vm;
