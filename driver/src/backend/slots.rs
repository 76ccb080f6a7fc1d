//! Runs an epoch's assignments on a pool of functions, whatever carries the invocations: one task
//! at a time per function, straggler copies on idle functions, and every answer counted once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use siren_crds::{BackendSpec, Task, TaskFailure, TaskResult};

use super::{Assignment, Invocation, failed_invocations};

/// Time limits of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// A task still running after this long is abandoned (and retried elsewhere).
    pub task_timeout: Duration,
    /// Once every other task of the epoch has finished, a task still running this many times the
    /// median task's duration later is dispatched again on an idle function; the first answer
    /// counts.
    pub straggler_factor: f64,
}

impl PoolLimits {
    pub fn of(spec: &BackendSpec) -> Self {
        Self {
            task_timeout: Duration::from_secs(u64::from(spec.task_timeout_seconds)),
            straggler_factor: spec.straggler_factor,
        }
    }
}

/// One invocation of a task on a function: its outcome and the seconds the platform bills for it.
pub type Attempt = Pin<Box<dyn Future<Output = (Result<TaskResult, TaskFailure>, f64)> + Send>>;

type Running =
    Pin<Box<dyn Future<Output = (usize, usize, Result<TaskResult, TaskFailure>, f64, f64)> + Send>>;

/// Runs `assignments` on `slots` functions through `invoke(slot, task)`, which must apply its own
/// time limit. Assignments of one slot run one after another, different slots concurrently. Once
/// nothing is queued, a task still running `straggler_factor` times the median task's duration is
/// dispatched again on an idle function; the first success counts, and every copy is billed.
/// A counted result's samples go to `progress`, unless the functions count them as they train.
/// Returns one invocation per assignment, in the order given.
pub async fn run_on_slots(
    assignments: Vec<Assignment>,
    slots: usize,
    straggler_factor: f64,
    progress: Option<Arc<AtomicU64>>,
    invoke: impl Fn(usize, Task) -> Attempt,
) -> Vec<Invocation> {
    if slots == 0 {
        let failure = TaskFailure::unreachable("the pool has no functions");
        return failed_invocations(assignments, &failure);
    }
    // One slot runs one task at a time: assignments of a busy slot wait for it.
    let mut queues: Vec<Vec<usize>> = vec![Vec::new(); slots];
    for (position, assignment) in assignments.iter().enumerate() {
        queues[assignment.slot % slots].push(position);
    }
    let mut answers: Vec<Option<Invocation>> = (0..assignments.len()).map(|_| None).collect();
    let mut extra_billed = vec![0.0f64; assignments.len()];
    let mut copies = vec![0u32; assignments.len()];
    let mut in_flight = vec![0u32; assignments.len()];
    let mut launched_at: Vec<Option<Instant>> = vec![None; assignments.len()];
    let mut busy = vec![false; slots];
    let mut durations: Vec<f64> = Vec::new();
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    // Counts the copy, marks its function busy and starts it.
    macro_rules! launch {
        ($slot:expr, $position:expr) => {{
            let (slot, position): (usize, usize) = ($slot, $position);
            copies[position] += 1;
            in_flight[position] += 1;
            launched_at[position] = Some(Instant::now());
            busy[slot] = true;
            let attempt = invoke(slot, assignments[position].task.clone());
            running.push(Box::pin(async move {
                let started = Instant::now();
                let (result, billed) = attempt.await;
                (
                    slot,
                    position,
                    result,
                    billed,
                    started.elapsed().as_secs_f64(),
                )
            }));
        }};
    }
    for (slot, queue) in queues.iter_mut().enumerate() {
        if !queue.is_empty() {
            let position = queue.remove(0);
            launch!(slot, position);
        }
    }
    let mut watch = tokio::time::interval(Duration::from_millis(50));
    while !running.is_empty() {
        let finished = tokio::select! {
            finished = running.next() => finished,
            _ = watch.tick() => None,
        };
        if let Some((slot, position, result, billed, seconds)) = finished {
            busy[slot] = false;
            in_flight[position] -= 1;
            // The first success counts; a failure counts only once no copy is left running.
            // Every other invocation is billed and never counted.
            let settles =
                answers[position].is_none() && (result.is_ok() || in_flight[position] == 0);
            if settles {
                if let Ok(result) = &result {
                    if let Some(progress) = &progress {
                        progress.fetch_add(result.samples, Ordering::Relaxed);
                    }
                    durations.push(seconds);
                }
                answers[position] = Some(Invocation {
                    task_id: assignments[position].task.task_id.clone(),
                    slot,
                    result,
                    billed_seconds: billed,
                });
            } else {
                extra_billed[position] += billed;
            }
            if !queues[slot].is_empty() {
                let next = queues[slot].remove(0);
                launch!(slot, next);
            }
        }
        if answers.iter().all(Option::is_some) {
            // Copies still running lost the race: they are billed until now and abandoned
            // (their functions finish them and stay busy meanwhile).
            for position in 0..assignments.len() {
                if in_flight[position] > 0
                    && let Some(started) = launched_at[position]
                {
                    // Platforms bill whole milliseconds; a platform that cannot be told to stop
                    // (Lambda) bills the copy until it ends, which this does not see.
                    extra_billed[position] +=
                        (started.elapsed().as_secs_f64() * 1000.0).ceil() / 1000.0;
                }
            }
            break;
        }
        // Straggler handling: nothing is queued any more and a task has run for much longer
        // than the typical one took; an idle function runs it again.
        if queues.iter().all(Vec::is_empty) && !durations.is_empty() {
            let mut sorted = durations.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let patience = median * straggler_factor;
            let late: Vec<usize> = (0..assignments.len())
                .filter(|p| {
                    answers[*p].is_none()
                        && copies[*p] < 2
                        && launched_at[*p].is_some_and(|t| t.elapsed().as_secs_f64() > patience)
                })
                .collect();
            for position in late {
                let Some(idle) = (0..slots).find(|s| !busy[*s]) else {
                    break;
                };
                tracing::info!(
                    task = %assignments[position].task.task_id,
                    slot = idle,
                    "straggler: dispatching the task again on an idle function"
                );
                launch!(idle, position);
            }
        }
    }
    answers
        .into_iter()
        .zip(extra_billed)
        .zip(assignments)
        .map(|((answer, extra), assignment)| match answer {
            Some(mut invocation) => {
                invocation.billed_seconds += extra;
                invocation
            }
            None => Invocation {
                task_id: assignment.task.task_id,
                slot: assignment.slot,
                result: Err(TaskFailure::retryable("no function answered")),
                billed_seconds: extra,
            },
        })
        .collect()
}
