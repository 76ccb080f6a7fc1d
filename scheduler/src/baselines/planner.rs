//! A model-predictive planner: before each epoch, the allowed action with the shortest predicted time
//! to the target among those whose predicted cost to the target fits the remaining budget, as if
//! that action were held to the end. It sees exactly what the DRL agent sees (same profiles, same
//! mask), so it is the ablation that says what learning adds to the predictions.

use crate::features::AgentContext;
use crate::grid::ActionGrid;
use crate::mask::LastEpoch;
use crate::policy::{Action, Decision, Observation, Scheduler};
use crate::profile::{JobProfile, PlatformProfile};

#[derive(Debug, Clone)]
pub struct PlannerScheduler {
    job: JobProfile,
    platform: PlatformProfile,
    grid: ActionGrid,
    context: Option<AgentContext>,
    spent_at_decision: f64,
}

impl PlannerScheduler {
    pub fn new(job: JobProfile, platform: PlatformProfile, grid: &ActionGrid) -> Self {
        Self {
            job,
            platform,
            grid: grid.clone(),
            context: None,
            spent_at_decision: 0.0,
        }
    }
}

impl Scheduler for PlannerScheduler {
    fn name(&self) -> &'static str {
        "planner"
    }

    fn decide(&mut self, observation: &Observation) -> Action {
        self.decide_or_stop(observation).action()
    }

    fn decide_or_stop(&mut self, observation: &Observation) -> Decision {
        if observation.epoch == 0 {
            self.context = None;
            self.spent_at_decision = 0.0;
        }
        let context = self.context.get_or_insert_with(|| {
            AgentContext::new(
                self.job.clone(),
                self.platform.clone(),
                &self.grid,
                observation.target_accuracy,
            )
        });
        context.observe(observation);
        let last = observation.last_action.and_then(|action| {
            let cost_usd = observation.spent_usd - self.spent_at_decision;
            (cost_usd > 0.0).then_some(LastEpoch { action, cost_usd })
        });
        let features = context.features(observation, last);
        let allowed: Vec<usize> = (0..features.allowed.len())
            .filter(|i| features.allowed[*i])
            .collect();
        let fits = |i: &usize| features.outlooks[*i].fits(features.remaining_usd);
        let by_time = |a: &&usize, b: &&usize| {
            features.outlooks[**a]
                .seconds
                .total_cmp(&features.outlooks[**b].seconds)
        };
        let choice = allowed
            .iter()
            .filter(|i| fits(i))
            .min_by(by_time)
            .or_else(|| {
                allowed.iter().min_by(|a, b| {
                    features.outlooks[**a]
                        .cost_usd
                        .total_cmp(&features.outlooks[**b].cost_usd)
                })
            });
        match choice {
            Some(&i) => {
                self.spent_at_decision = observation.spent_usd;
                Decision::Run(context.actions[i])
            }
            None => Decision::Stop {
                cheapest: features.cheapest.unwrap_or(context.actions[0]),
            },
        }
    }
}
