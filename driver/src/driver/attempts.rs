//! Running an epoch's tasks to one result each: a failure the job's failure policy does not make
//! final goes to the next function slot, up to the policy's attempts per task, and a retry that
//! could overrun the budget is not started.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use siren_crds::{FailurePolicySpec, Task, TaskFailure, TaskResult};

use super::DriverError;
use super::billing::Bill;
use crate::backend::{Assignment, FunctionBackend, Invocation};

/// What bounds an epoch's retries: the job's failure policy and the money it may still spend.
pub(super) struct Retries<'a> {
    pub policy: &'a FailurePolicySpec,
    pub max_cost_usd: Option<f64>,
    /// Spent before this epoch.
    pub spent_usd: f64,
}

/// Runs `tasks` on `slots` functions of `backend`, each task's result counted once; every
/// invocation goes on `bill`, whatever comes of it.
pub(super) async fn run_tasks(
    backend: &mut dyn FunctionBackend,
    epoch: u32,
    tasks: Vec<Task>,
    slots: usize,
    progress: Arc<AtomicU64>,
    retries: Retries<'_>,
    bill: &mut Bill<'_>,
) -> Result<Vec<TaskResult>, DriverError> {
    let mut pending: Vec<(Assignment, u32)> = tasks
        .into_iter()
        .enumerate()
        .map(|(slot, task)| (Assignment { slot, task }, 1))
        .collect();
    let mut results = Vec::new();
    while !pending.is_empty() {
        let assignments: Vec<Assignment> = pending.iter().map(|(a, _)| a.clone()).collect();
        let invocations = backend.invoke_all(assignments, Arc::clone(&progress)).await;
        for invocation in &invocations {
            bill.add(invocation.billed_seconds);
        }
        let mut by_task: HashMap<String, Invocation> = invocations
            .into_iter()
            .map(|invocation| (invocation.task_id.clone(), invocation))
            .collect();
        let mut retry = Vec::new();
        for (assignment, attempt) in pending {
            let result = match by_task.remove(&assignment.task.task_id) {
                Some(invocation) => invocation.result,
                None => Err(TaskFailure::unreachable("the backend lost the invocation")),
            };
            match result {
                Ok(result) => results.push(result),
                Err(failure)
                    if !retries.policy.is_final(&failure)
                        && attempt < retries.policy.attempts_per_task =>
                {
                    tracing::warn!(task = %assignment.task.task_id, attempt, %failure, "retrying task on another function");
                    let mut task = assignment.task;
                    task.attempt = attempt + 1;
                    let slot = (assignment.slot + 1) % slots.max(1);
                    retry.push((Assignment { slot, task }, attempt + 1));
                }
                Err(failure) => {
                    return Err(DriverError::Task {
                        epoch: epoch + 1,
                        task_id: assignment.task.task_id,
                        attempts: attempt,
                        failure,
                    });
                }
            }
        }
        if let (Some(max_cost_usd), Some((first, _))) = (retries.max_cost_usd, retry.first()) {
            let retry_usd = bill.worst_case_usd(retry.len());
            let spent_usd = retries.spent_usd + bill.usd();
            if spent_usd + retry_usd > max_cost_usd {
                return Err(DriverError::RetryOverBudget {
                    epoch: epoch + 1,
                    task_id: first.task.task_id.clone(),
                    retry_usd,
                    remaining_usd: max_cost_usd - spent_usd,
                });
            }
        }
        pending = retry;
    }
    Ok(results)
}
