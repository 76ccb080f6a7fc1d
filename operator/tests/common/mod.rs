//! What several of the operator's test files share.

/// Every invocation costs one unit whatever its duration, so budgets are exact in tests.
pub struct UnitPrice;

impl siren_scheduler::CostModel for UnitPrice {
    fn vcpus(&self, memory_mb: u32) -> f64 {
        f64::from(memory_mb) / 1769.0
    }
    fn invocation_cost(&self, _: u32, _: f64) -> f64 {
        1.0
    }
}
