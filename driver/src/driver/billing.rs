//! What an epoch costs: every invocation is billed, failed, retried and straggler copies
//! included, at the memory size the epoch ran with.

use siren_scheduler::CostModel;

pub(super) struct Bill<'a> {
    cost_model: &'a dyn CostModel,
    memory_mb: u32,
    seconds: Vec<f64>,
}

impl<'a> Bill<'a> {
    pub fn new(cost_model: &'a dyn CostModel, memory_mb: u32) -> Self {
        Self {
            cost_model,
            memory_mb,
            seconds: Vec::new(),
        }
    }

    pub fn add(&mut self, billed_seconds: f64) {
        self.seconds.push(billed_seconds);
    }

    /// Billed seconds of every invocation so far.
    pub fn seconds(&self) -> &[f64] {
        &self.seconds
    }

    pub fn usd(&self) -> f64 {
        self.seconds
            .iter()
            .map(|s| self.cost_model.invocation_cost(self.memory_mb, *s))
            .sum()
    }

    /// What `tasks` more invocations could cost: each as long as the slowest so far. The
    /// scheduler's worst case covered one invocation per function, not retries.
    pub fn worst_case_usd(&self, tasks: usize) -> f64 {
        let slowest = self.seconds.iter().copied().fold(0.0, f64::max);
        tasks as f64 * self.cost_model.invocation_cost(self.memory_mb, slowest)
    }
}
