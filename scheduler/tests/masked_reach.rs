//! How much reach the budget guarantee itself costs: how often some static configuration, chosen
//! in hindsight, reaches the target while obeying the mask. Run by hand with --ignored --nocapture.

use siren_scheduler::mask::{LastEpoch, pessimistic_cost};
use siren_scheduler::simulator::EpochModel;
use siren_scheduler::{
    Action, ActionGrid, Decision, JobProfile, Observation, PlatformProfile, Scheduler, SimJob,
    SimJobConfig, run_episode,
};

struct MaskedStatic {
    action: Action,
    job: JobProfile,
    platform: PlatformProfile,
    spent: f64,
}

impl Scheduler for MaskedStatic {
    fn name(&self) -> &'static str {
        "masked-static"
    }
    fn decide(&mut self, o: &Observation) -> Action {
        self.decide_or_stop(o).action()
    }
    fn decide_or_stop(&mut self, o: &Observation) -> Decision {
        let model = EpochModel::new(&self.job, &self.platform);
        let last = o.last_action.map(|a| LastEpoch {
            action: a,
            cost_usd: o.spent_usd - self.spent,
        });
        self.spent = o.spent_usd;
        let cost = pessimistic_cost(&model, self.action, last);
        if o.spent_usd + cost > o.budget_usd.unwrap_or(f64::INFINITY) {
            Decision::Stop {
                cheapest: self.action,
            }
        } else {
            Decision::Run(self.action)
        }
    }
}

#[test]
#[ignore = "a measurement for docs/scheduler.md, not a check"]
fn masked_reach() {
    let grid = ActionGrid::default();
    for factor in [1.25, 1.5, 2.0] {
        let mut reach = 0;
        let jobs = 100;
        for i in 0..jobs {
            let job = SimJob::draw((1 << 62) + i, &SimJobConfig::default(), &grid, Some(factor));
            let any = grid.actions().iter().any(|a| {
                let mut s = MaskedStatic {
                    action: *a,
                    job: job.believed_job.clone(),
                    platform: job.believed_platform.clone(),
                    spent: 0.0,
                };
                EpochModel::new(&job.job, &job.platform).is_feasible(*a)
                    && run_episode(&mut job.simulator(0), &mut s, &job.spec()).reached()
            });
            reach += usize::from(any);
        }
        println!(
            "factor {factor}: {reach}/{jobs} jobs reachable by some masked static configuration"
        );
    }
}
