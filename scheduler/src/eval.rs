//! Evaluation: every scheduler on the same randomised held-out jobs at several budgets, summarised
//! into a serialisable table plus the data for the two plots (time to target against budget per
//! scheduler; the DRL agent's per-epoch choices on one job).

use serde::{Deserialize, Serialize};

use crate::baselines::bo::{BayesOptScheduler, BoConfig, BoObservation};
use crate::baselines::greedy::GreedyScheduler;
use crate::baselines::oracle::{DpConfig, StaticSearch, dp_oracle};
use crate::baselines::planner::PlannerScheduler;
use crate::baselines::vm::{VmType, best_vm_cluster};
use crate::drl::{DrlScheduler, Policy};
use crate::episode::{EpisodeResult, run_episode};
use crate::forecast::{JobState, forecast};
use crate::gate::StopReason;
use crate::grid::ActionGrid;
use crate::offline_training::HELD_OUT_SEEDS;
use crate::policy::{Action, Scheduler, StaticScheduler};
use crate::record::EpochRecord;
use crate::simjob::{SimJob, SimJobConfig};
use crate::simulator::EpochModel;

pub const DRL: &str = "drl";
pub const PLANNER: &str = "planner";
pub const GREEDY: &str = "greedy";
pub const STATIC_DEFAULT: &str = "static-default";
pub const ORACLE_STATIC: &str = "oracle-static";
pub const MEDIAN_STATIC: &str = "median-static";
pub const VM_CLUSTER: &str = "vm-cluster";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub jobs: usize,
    /// Picks the held-out job seeds; training never draws from them.
    pub seed: u64,
    /// Budgets as multiples of each job's cheapest static way to its target.
    pub budget_factors: Vec<f64>,
    pub job_config: SimJobConfig,
    pub grid: ActionGrid,
    /// The user's fixed choice for the static baseline.
    pub default_static: Action,
    /// Jobs (the first ones) on which Bayesian optimisation and online DRL get repeated runs.
    pub bo_jobs: usize,
    pub bo_runs: usize,
    /// Jobs (the first ones) on which the dynamic-programming oracle is solved.
    pub dp_jobs: usize,
    pub dp: DpConfig,
    pub vm: VmType,
    pub vm_sizes: Vec<u32>,
}

impl EvalConfig {
    pub fn standard(jobs: usize, seed: u64) -> Self {
        Self {
            jobs,
            seed,
            budget_factors: vec![1.25, 1.5, 2.0, 3.0],
            job_config: SimJobConfig::default(),
            grid: ActionGrid::default(),
            default_static: Action {
                functions: 8,
                memory_mb: 1769,
            },
            bo_jobs: jobs.min(100),
            bo_runs: 6,
            dp_jobs: jobs.min(20),
            dp: DpConfig::default(),
            vm: VmType::c5_xlarge(),
            vm_sizes: vec![1, 2, 4, 8, 16, 32],
        }
    }
}

/// One scheduler's row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSummary {
    pub scheduler: String,
    pub runs: usize,
    pub reached: usize,
    pub mean_time_to_target: f64,
    pub p95_time_to_target: f64,
    pub mean_cost_usd: f64,
    pub mean_budget_used: f64,
    pub budget_violations: usize,
    /// Mean of (time / oracle's best static time) over runs where both reached the target.
    pub mean_time_vs_oracle: f64,
    /// Runs where the oracle reached the target and this scheduler did not.
    pub missed_where_oracle_reached: usize,
}

/// Plot 1: mean time to target per scheduler at each budget factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetSeries {
    pub scheduler: String,
    pub budget_factors: Vec<f64>,
    pub mean_time_to_target: Vec<f64>,
    pub reached_fraction: Vec<f64>,
    /// Runs at each budget factor in which the oracle's static configuration reached the target
    /// and this scheduler did not.
    pub missed_where_oracle_reached: Vec<usize>,
    /// Runs at each budget factor in which the oracle's static configuration reached the target.
    pub oracle_reached: Vec<usize>,
}

/// Plot 2: the DRL agent's choices on one job, epoch by epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTrace {
    pub job_seed: u64,
    pub budget_usd: f64,
    pub target_accuracy: f64,
    pub functions: Vec<u32>,
    pub memory_mb: Vec<u32>,
    pub accuracy: Vec<f64>,
    pub epoch_seconds: Vec<f64>,
    pub cumulative_cost_usd: Vec<f64>,
}

/// Same runs of experience: Bayesian optimisation's static runs against the DRL agent learning
/// online from the same number of runs, then one more run each with what they have learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperienceComparison {
    /// (job, budget) pairs given repeated runs.
    pub cases: usize,
    pub runs_of_experience: usize,
    pub drl_mean_time_during: f64,
    pub bo_mean_time_during: f64,
    pub drl_mean_time_after: f64,
    pub bo_mean_time_after: f64,
    pub drl_reached_after: usize,
    pub bo_reached_after: usize,
    /// Pairs in which both reached the target after learning (the means above are over these).
    pub compared_after: usize,
    pub compared_during: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpComparison {
    pub plans: usize,
    /// Mean of (dynamic-programming schedule time / best static time), both on the mean model.
    pub mean_dynamic_vs_static: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acceptance {
    pub evaluated_runs: usize,
    pub drl_budget_violations: usize,
    /// Ratio of mean times over runs where both reached the target.
    pub drl_vs_oracle_static: f64,
    /// Mean of the per-run ratios over the same runs: weighs short jobs as much as long ones.
    pub drl_vs_oracle_static_per_run: f64,
    pub drl_vs_median_static: f64,
    pub drl_vs_bo_after_learning: f64,
    /// 1 - DRL time / VM-cluster time at the same budget, ratio of means over runs both finished.
    pub time_reduction_vs_vm_cluster: f64,
    pub drl_reached_fraction: f64,
    pub oracle_reached_fraction: f64,
}

/// How well the forecast a job's status carries (`crate::forecast`) predicted the rest of the DRL
/// agent's runs: after every epoch but the last, the forecast against what followed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastAccuracy {
    pub forecasts: usize,
    /// Median of |predicted - actual| / actual seconds to the run's end, for forecasts made in
    /// the first, second and last third of a run.
    pub median_seconds_error: Vec<f64>,
    /// The same for the dollars still spent.
    pub median_cost_error: Vec<f64>,
    /// Forecasts that named the reason the run ended with, in each third.
    pub end_predicted_fraction: Vec<f64>,
}

#[derive(Default)]
struct ForecastAccumulator {
    seconds_errors: [Vec<f64>; 3],
    cost_errors: [Vec<f64>; 3],
    ends: [(usize, usize); 3],
}

impl ForecastAccumulator {
    fn add(&mut self, job: &SimJob, result: &EpisodeResult) {
        let epochs = &result.epochs;
        let ended = match result.stop {
            StopReason::SchedulerStopped => StopReason::BudgetExhausted,
            reason => reason,
        };
        for done in 1..epochs.len() {
            let history = &epochs[..done];
            let state = JobState {
                history,
                epochs_done: done as u32,
                max_epochs: job.spec().max_epochs,
                target_accuracy: Some(job.target_accuracy),
                budget_usd: Some(job.budget_usd),
                spent_usd: history.last().map_or(0.0, |r| r.cumulative_cost_usd),
                curve: Some(&job.believed_job.curve),
            };
            let Some(forecast) = forecast(&state) else {
                continue;
            };
            let third = (3 * done / epochs.len()).min(2);
            let seconds: f64 = epochs[done..].iter().map(|r| r.seconds).sum();
            let cost: f64 = epochs[done..].iter().map(|r| r.cost_usd).sum();
            if seconds > 0.0 {
                self.seconds_errors[third].push((forecast.seconds - seconds).abs() / seconds);
            }
            if cost > 0.0 {
                self.cost_errors[third].push((forecast.cost_usd - cost).abs() / cost);
            }
            self.ends[third].1 += 1;
            if forecast.ends_by == ended {
                self.ends[third].0 += 1;
            }
        }
    }

    fn finish(self) -> ForecastAccuracy {
        let median = |values: &[f64]| percentile(values, 0.5);
        ForecastAccuracy {
            forecasts: self.ends.iter().map(|(_, n)| n).sum(),
            median_seconds_error: self.seconds_errors.iter().map(|e| median(e)).collect(),
            median_cost_error: self.cost_errors.iter().map(|e| median(e)).collect(),
            end_predicted_fraction: self
                .ends
                .iter()
                .map(|(right, n)| *right as f64 / (*n).max(1) as f64)
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub config: EvalConfig,
    pub table: Vec<SchedulerSummary>,
    pub by_budget: Vec<BudgetSeries>,
    pub drl_trace: Option<ScheduleTrace>,
    pub experience: ExperienceComparison,
    pub dynamic_programming: DpComparison,
    pub acceptance: Acceptance,
    #[serde(default)]
    pub forecast: ForecastAccuracy,
}

/// One scheduler on one job at one budget.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    time_to_target: Option<f64>,
    cost_usd: f64,
    budget_usd: f64,
    violated: bool,
}

impl Outcome {
    fn from_episode(result: &EpisodeResult, budget_usd: f64) -> Self {
        Self {
            time_to_target: result.time_to_target(),
            cost_usd: result.cost_usd,
            budget_usd,
            violated: result.violated(Some(budget_usd)),
        }
    }

    fn success(&self) -> Option<f64> {
        self.time_to_target.filter(|_| !self.violated)
    }
}

/// All schedulers' outcomes on one (job, budget) pair.
struct Case {
    factor_index: usize,
    oracle: Option<f64>,
    outcomes: Vec<(&'static str, Outcome)>,
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn run(job: &SimJob, scheduler: &mut dyn Scheduler, run: u64) -> EpisodeResult {
    run_episode(&mut job.simulator(run), scheduler, &job.spec())
}

fn drl_for(policy: &Policy, job: &SimJob) -> DrlScheduler {
    DrlScheduler::new(
        policy.clone(),
        job.believed_job.clone(),
        job.believed_platform.clone(),
    )
}

fn trace(job: &SimJob, result: &EpisodeResult) -> ScheduleTrace {
    let mut spent = 0.0;
    ScheduleTrace {
        job_seed: job.seed,
        budget_usd: job.budget_usd,
        target_accuracy: job.target_accuracy,
        functions: result.epochs.iter().map(|e| e.functions).collect(),
        memory_mb: result.epochs.iter().map(|e| e.memory_mb).collect(),
        accuracy: result.epochs.iter().map(|e| e.accuracy).collect(),
        epoch_seconds: result.epochs.iter().map(|e| e.seconds).collect(),
        cumulative_cost_usd: result
            .epochs
            .iter()
            .map(|e| {
                spent += e.cost_usd;
                spent
            })
            .collect(),
    }
}

/// Runs every scheduler on `config.jobs` held-out jobs at every budget factor.
pub fn evaluate(policy: &Policy, config: &EvalConfig) -> EvalReport {
    let grid = &config.grid;
    let mut cases: Vec<Case> = Vec::new();
    let mut drl_trace = None;
    let mut trace_changes = false;
    let mut experience = ExperienceAccumulator::default();
    let mut dp_ratios = Vec::new();
    let mut forecasts = ForecastAccumulator::default();
    for index in 0..config.jobs {
        let seed = HELD_OUT_SEEDS
            .wrapping_add(config.seed.wrapping_mul(1 << 24))
            .wrapping_add(index as u64);
        let base = SimJob::draw(seed, &config.job_config, grid, Some(1.0));
        for (factor_index, &factor) in config.budget_factors.iter().enumerate() {
            let job = base.with_budget_factor(factor);
            let budget = job.budget_usd;
            let mut outcomes: Vec<(&'static str, Outcome)> = Vec::new();

            let drl_result = run(&job, &mut drl_for(policy, &job), 0);
            // Plot the first run in which the agent changes its choice at least once (most runs at
            // loose budgets hold one action throughout); failing that, the first run.
            let changes = drl_result
                .epochs
                .windows(2)
                .any(|pair| pair[0].action() != pair[1].action());
            if !trace_changes && (changes || drl_trace.is_none()) {
                drl_trace = Some(trace(&job, &drl_result));
                trace_changes = changes;
            }
            outcomes.push((DRL, Outcome::from_episode(&drl_result, budget)));
            forecasts.add(&job, &drl_result);
            let mut planner = PlannerScheduler::new(
                job.believed_job.clone(),
                job.believed_platform.clone(),
                grid,
            );
            outcomes.push((
                PLANNER,
                Outcome::from_episode(&run(&job, &mut planner, 0), budget),
            ));
            let mut greedy = GreedyScheduler::new(
                job.believed_job.clone(),
                job.believed_platform.clone(),
                grid,
            );
            outcomes.push((
                GREEDY,
                Outcome::from_episode(&run(&job, &mut greedy, 0), budget),
            ));
            let mut fixed = StaticScheduler::new(config.default_static);
            outcomes.push((
                STATIC_DEFAULT,
                Outcome::from_episode(&run(&job, &mut fixed, 0), budget),
            ));

            let search = StaticSearch::run(&job, 0, grid);
            let oracle = search.best().and_then(|r| r.succeeded());
            if let Some(best) = search.best() {
                outcomes.push((
                    ORACLE_STATIC,
                    Outcome {
                        time_to_target: best.time_to_target,
                        cost_usd: best.cost_usd,
                        budget_usd: budget,
                        violated: best.violated,
                    },
                ));
            } else {
                outcomes.push((
                    ORACLE_STATIC,
                    Outcome {
                        time_to_target: None,
                        cost_usd: 0.0,
                        budget_usd: budget,
                        violated: false,
                    },
                ));
            }
            outcomes.push((
                MEDIAN_STATIC,
                Outcome {
                    time_to_target: search.median_time(),
                    cost_usd: f64::NAN,
                    budget_usd: budget,
                    violated: false,
                },
            ));

            let vm = best_vm_cluster(
                &job.job,
                &job.platform,
                &config.vm,
                &config.vm_sizes,
                job.target_accuracy,
                budget,
                job.seed,
            );
            outcomes.push((
                VM_CLUSTER,
                Outcome {
                    time_to_target: vm.and_then(|v| v.time_to_target),
                    cost_usd: vm.map_or(0.0, |v| v.cost_usd),
                    budget_usd: budget,
                    violated: vm.is_some_and(|v| v.cost_usd > budget * (1.0 + 1e-12)),
                },
            ));

            if index < config.bo_jobs {
                experience.add(compare_experience(policy, &job, grid, config.bo_runs));
            }
            if index < config.dp_jobs
                && let Some(plan) = dp_oracle(
                    &job.job,
                    &job.platform,
                    grid,
                    job.target_accuracy,
                    budget,
                    config.dp,
                )
                && let Some(best_static) = plan.best_static_seconds
            {
                dp_ratios.push(plan.seconds / best_static);
            }
            cases.push(Case {
                factor_index,
                oracle,
                outcomes,
            });
        }
    }
    let names = [
        DRL,
        PLANNER,
        GREEDY,
        STATIC_DEFAULT,
        ORACLE_STATIC,
        MEDIAN_STATIC,
        VM_CLUSTER,
    ];
    let table: Vec<SchedulerSummary> = names.iter().map(|name| summarise(name, &cases)).collect();
    let by_budget = names
        .iter()
        .map(|name| {
            let mut series = BudgetSeries {
                scheduler: name.to_string(),
                budget_factors: config.budget_factors.clone(),
                mean_time_to_target: Vec::new(),
                reached_fraction: Vec::new(),
                missed_where_oracle_reached: Vec::new(),
                oracle_reached: Vec::new(),
            };
            for f in 0..config.budget_factors.len() {
                let outcomes: Vec<(Option<f64>, Outcome)> = cases
                    .iter()
                    .filter(|c| c.factor_index == f)
                    .filter_map(|c| outcome_of(c, name).map(|o| (c.oracle, o)))
                    .collect();
                let successes: Vec<f64> =
                    outcomes.iter().filter_map(|(_, o)| o.success()).collect();
                series.mean_time_to_target.push(mean(&successes));
                series
                    .reached_fraction
                    .push(successes.len() as f64 / outcomes.len().max(1) as f64);
                let oracle_reached = outcomes.iter().filter(|(oracle, _)| oracle.is_some());
                series.oracle_reached.push(oracle_reached.clone().count());
                series.missed_where_oracle_reached.push(
                    oracle_reached
                        .filter(|(_, o)| o.success().is_none())
                        .count(),
                );
            }
            series
        })
        .collect();
    let experience = experience.finish(config.bo_runs);
    let acceptance = accept(&cases, &experience);
    EvalReport {
        config: config.clone(),
        table,
        by_budget,
        drl_trace,
        experience,
        dynamic_programming: DpComparison {
            plans: dp_ratios.len(),
            mean_dynamic_vs_static: mean(&dp_ratios),
        },
        acceptance,
        forecast: forecasts.finish(),
    }
}

fn outcome_of(case: &Case, name: &str) -> Option<Outcome> {
    case.outcomes
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, o)| *o)
}

fn summarise(name: &str, cases: &[Case]) -> SchedulerSummary {
    let outcomes: Vec<(Option<f64>, Outcome)> = cases
        .iter()
        .filter_map(|c| outcome_of(c, name).map(|o| (c.oracle, o)))
        .collect();
    let times: Vec<f64> = outcomes.iter().filter_map(|(_, o)| o.success()).collect();
    let costs: Vec<f64> = outcomes
        .iter()
        .map(|(_, o)| o.cost_usd)
        .filter(|c| c.is_finite())
        .collect();
    let used: Vec<f64> = outcomes
        .iter()
        .filter(|(_, o)| o.cost_usd.is_finite())
        .map(|(_, o)| o.cost_usd / o.budget_usd)
        .collect();
    let ratios: Vec<f64> = outcomes
        .iter()
        .filter_map(|(oracle, o)| Some(o.success()? / (*oracle)?))
        .collect();
    SchedulerSummary {
        scheduler: name.to_string(),
        runs: outcomes.len(),
        reached: times.len(),
        mean_time_to_target: mean(&times),
        p95_time_to_target: percentile(&times, 0.95),
        mean_cost_usd: mean(&costs),
        mean_budget_used: mean(&used),
        budget_violations: outcomes.iter().filter(|(_, o)| o.violated).count(),
        mean_time_vs_oracle: mean(&ratios),
        missed_where_oracle_reached: outcomes
            .iter()
            .filter(|(oracle, o)| oracle.is_some() && o.success().is_none())
            .count(),
    }
}

/// Ratio of mean times of `a` and `b` over the cases where both succeeded.
fn paired_ratio(cases: &[Case], a: &str, b: &str) -> f64 {
    let pairs: Vec<(f64, f64)> = cases
        .iter()
        .filter_map(|c| Some((outcome_of(c, a)?.success()?, outcome_of(c, b)?.success()?)))
        .collect();
    let (ta, tb): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    mean(&ta) / mean(&tb)
}

fn accept(cases: &[Case], experience: &ExperienceComparison) -> Acceptance {
    let reached = |name: &str| {
        cases
            .iter()
            .filter(|c| outcome_of(c, name).and_then(|o| o.success()).is_some())
            .count() as f64
            / cases.len().max(1) as f64
    };
    Acceptance {
        evaluated_runs: cases.len(),
        drl_budget_violations: cases
            .iter()
            .filter(|c| outcome_of(c, DRL).is_some_and(|o| o.violated))
            .count(),
        drl_vs_oracle_static: paired_ratio(cases, DRL, ORACLE_STATIC),
        drl_vs_oracle_static_per_run: mean(
            &cases
                .iter()
                .filter_map(|c| Some(outcome_of(c, DRL)?.success()? / c.oracle?))
                .collect::<Vec<f64>>(),
        ),
        drl_vs_median_static: paired_ratio(cases, DRL, MEDIAN_STATIC),
        drl_vs_bo_after_learning: experience.drl_mean_time_after / experience.bo_mean_time_after,
        time_reduction_vs_vm_cluster: 1.0 - paired_ratio(cases, DRL, VM_CLUSTER),
        drl_reached_fraction: reached(DRL),
        oracle_reached_fraction: reached(ORACLE_STATIC),
    }
}

/// Times of one job's repeated runs: during learning (runs 1..=R) and the run after.
struct ExperienceRuns {
    drl_during: Vec<Option<f64>>,
    bo_during: Vec<Option<f64>>,
    drl_after: Option<f64>,
    bo_after: Option<f64>,
}

fn compare_experience(
    policy: &Policy,
    job: &SimJob,
    grid: &ActionGrid,
    runs: usize,
) -> ExperienceRuns {
    let model = EpochModel::new(&job.believed_job, &job.believed_platform);
    let candidates: Vec<Action> = grid
        .actions()
        .into_iter()
        .filter(|a| model.is_feasible(*a))
        .collect();
    let mut bo = BayesOptScheduler::new(candidates, BoConfig::default());
    let mut drl = drl_for(policy, job);
    let budget = Some(job.budget_usd);
    let success = |r: &EpisodeResult| r.time_to_target().filter(|_| !r.violated(budget));
    let (mut drl_during, mut bo_during) = (Vec::new(), Vec::new());
    for r in 1..=runs as u64 {
        let result = run(job, &mut bo, r);
        bo_during.push(success(&result));
        let action = result.epochs.first().map_or(
            Action {
                functions: 1,
                memory_mb: 1769,
            },
            EpochRecord::action,
        );
        bo.observe_run(BoObservation {
            action,
            time_to_target: result.time_to_target(),
            seconds: result.seconds,
        });
        let result = run(job, &mut drl, r);
        drl_during.push(success(&result));
        drl.learn_from_job();
    }
    let after = runs as u64 + 1;
    let bo_after = bo
        .best()
        .and_then(|(action, _)| success(&run(job, &mut StaticScheduler::new(action), after)));
    let drl_after = success(&run(job, &mut drl, after));
    ExperienceRuns {
        drl_during,
        bo_during,
        drl_after,
        bo_after,
    }
}

#[derive(Default)]
struct ExperienceAccumulator {
    cases: usize,
    during: Vec<(f64, f64)>,
    after: Vec<(f64, f64)>,
    drl_reached_after: usize,
    bo_reached_after: usize,
}

impl ExperienceAccumulator {
    fn add(&mut self, runs: ExperienceRuns) {
        self.cases += 1;
        for (d, b) in runs.drl_during.iter().zip(&runs.bo_during) {
            if let (Some(d), Some(b)) = (d, b) {
                self.during.push((*d, *b));
            }
        }
        self.drl_reached_after += usize::from(runs.drl_after.is_some());
        self.bo_reached_after += usize::from(runs.bo_after.is_some());
        if let (Some(d), Some(b)) = (runs.drl_after, runs.bo_after) {
            self.after.push((d, b));
        }
    }

    fn finish(self, runs: usize) -> ExperienceComparison {
        let split = |pairs: &[(f64, f64)]| {
            let (a, b): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
            (mean(&a), mean(&b))
        };
        let (drl_during, bo_during) = split(&self.during);
        let (drl_after, bo_after) = split(&self.after);
        ExperienceComparison {
            cases: self.cases,
            runs_of_experience: runs,
            drl_mean_time_during: drl_during,
            bo_mean_time_during: bo_during,
            drl_mean_time_after: drl_after,
            bo_mean_time_after: bo_after,
            drl_reached_after: self.drl_reached_after,
            bo_reached_after: self.bo_reached_after,
            compared_after: self.after.len(),
            compared_during: self.during.len(),
        }
    }
}
