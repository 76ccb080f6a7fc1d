//! The hard budget guarantee: with the mask in charge, no simulated job ever spends more than its
//! budget, whatever the policy does among the actions the mask allows, on profiles that are off by
//! up to the calibration error the margin covers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use siren_scheduler::features::AgentContext;
use siren_scheduler::mask::{LastEpoch, affordable};
use siren_scheduler::{
    ActionGrid, Decision, DrlScheduler, LearningConfig, Observation, Policy, Scheduler, SimJob,
    SimJobConfig, run_episode,
};

/// Picks among allowed actions adversarially: the one with the largest pessimistic cost, or a random
/// one, so that the mask, not the policy, is what keeps the budget.
struct Adversary {
    context: Option<AgentContext>,
    job: SimJob,
    rng: Option<ChaCha8Rng>,
    spent_at_decision: f64,
}

impl Scheduler for Adversary {
    fn name(&self) -> &'static str {
        "adversary"
    }

    fn decide(&mut self, observation: &Observation) -> siren_scheduler::Action {
        self.decide_or_stop(observation).action()
    }

    fn decide_or_stop(&mut self, observation: &Observation) -> Decision {
        let context = self.context.get_or_insert_with(|| {
            AgentContext::new(
                self.job.believed_job.clone(),
                self.job.believed_platform.clone(),
                &ActionGrid::default(),
                observation.target_accuracy,
            )
        });
        context.observe(observation);
        let last = observation.last_action.map(|action| LastEpoch {
            action,
            cost_usd: observation.spent_usd - self.spent_at_decision,
        });
        let features = context.features(observation, last);
        let allowed: Vec<usize> = (0..features.allowed.len())
            .filter(|i| features.allowed[*i])
            .collect();
        if allowed.is_empty() {
            return Decision::Stop {
                cheapest: features.cheapest.unwrap_or(context.actions[0]),
            };
        }
        let pick = match &mut self.rng {
            Some(rng) => allowed[rng.random_range(0..allowed.len())],
            None => *allowed
                .iter()
                .max_by(|a, b| {
                    features.pessimistic_costs[**a].total_cmp(&features.pessimistic_costs[**b])
                })
                .expect("not empty"),
        };
        self.spent_at_decision = observation.spent_usd;
        Decision::Run(context.actions[pick])
    }
}

#[test]
fn no_masked_episode_ever_exceeds_its_budget() {
    let grid = ActionGrid::default();
    let config = SimJobConfig::default();
    let mut episodes = 0;
    let mut stopped_by_mask = 0;
    for seed in 0..150u64 {
        let base = SimJob::draw(900_000 + seed, &config, &grid, Some(1.0));
        // From budgets too small for a single epoch to generous ones.
        for factor in [0.02, 0.3, 1.0, 1.3, 2.5] {
            let job = base.with_budget_factor(factor);
            for random in [false, true] {
                let mut adversary = Adversary {
                    context: None,
                    job: job.clone(),
                    rng: random.then(|| ChaCha8Rng::seed_from_u64(seed)),
                    spent_at_decision: 0.0,
                };
                let result = run_episode(&mut job.simulator(seed), &mut adversary, &job.spec());
                assert!(
                    result.cost_usd <= job.budget_usd,
                    "job {seed} x{factor}: spent {} of {}",
                    result.cost_usd,
                    job.budget_usd
                );
                episodes += 1;
                stopped_by_mask +=
                    usize::from(result.stop == siren_scheduler::StopReason::SchedulerStopped);
            }
        }
    }
    assert_eq!(episodes, 1500);
    // The test means something only if the mask had to stop jobs.
    assert!(stopped_by_mask > 300, "{stopped_by_mask}");
}

#[test]
fn an_untrained_exploring_agent_never_exceeds_its_budget() {
    let grid = ActionGrid::default();
    let config = SimJobConfig::default();
    for seed in 0..100u64 {
        let job = SimJob::draw(
            800_000 + seed,
            &config,
            &grid,
            Some(0.5 + (seed % 5) as f64 * 0.4),
        );
        let policy = Policy::new(grid.clone(), 8, LearningConfig::default(), seed);
        let mut agent = DrlScheduler::new(
            policy,
            job.believed_job.clone(),
            job.believed_platform.clone(),
        )
        .exploring(seed);
        let result = run_episode(&mut job.simulator(seed), &mut agent, &job.spec());
        assert!(!result.violated(Some(job.budget_usd)), "job {seed}");
    }
}

#[test]
fn allowed_means_spent_plus_pessimistic_cost_fits() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..10_000 {
        let costs: Vec<f64> = (0..6).map(|_| rng.random_range(0.0..2.0)).collect();
        let feasible: Vec<bool> = (0..6).map(|_| rng.random_bool(0.8)).collect();
        let budget = rng.random_range(0.0..5.0);
        let spent = rng.random_range(0.0..5.0);
        for (i, allowed) in affordable(&costs, &feasible, spent, Some(budget))
            .into_iter()
            .enumerate()
        {
            if allowed {
                assert!(feasible[i] && spent + costs[i] <= budget);
            }
        }
    }
}
