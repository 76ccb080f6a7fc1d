//! What a user may change while a job runs: the driver reads it before every epoch, so a change
//! takes effect at the next one.

use siren_crds::TrainingJobSpec;

use super::JobDriver;

#[derive(Debug, Clone, PartialEq)]
pub struct RunControl {
    pub max_cost_usd: Option<f64>,
    pub max_epochs: u32,
    pub suspend: bool,
}

impl RunControl {
    pub fn from_spec(spec: &TrainingJobSpec) -> Self {
        Self {
            max_cost_usd: spec.budget.max_cost_usd,
            max_epochs: spec.training.max_epochs,
            suspend: spec.suspend,
        }
    }
}

impl JobDriver {
    /// Takes the latest control into the spec; whether the job is to suspend now.
    pub(super) fn apply_control(&mut self) -> bool {
        let Some(control) = &mut self.control else {
            return false;
        };
        let control = control.borrow_and_update().clone();
        self.spec.budget.max_cost_usd = control.max_cost_usd;
        self.spec.training.max_epochs = control.max_epochs;
        control.suspend
    }
}
