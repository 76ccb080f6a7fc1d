//! Fault test of the process backend: `kill -9` of a worker process while it runs its task. The
//! task is retried on another function, the epoch completes, and the store holds exactly the
//! updates the task results report. (A file of its own: its binary runs alone, so the workers it
//! sees are its own.)

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Event, Events, job, on, run, signal, store_stats, worker_pids};
use siren_crds::BackendKind;
use siren_e2e::RedisServer;

#[test]
fn a_worker_killed_mid_task_has_its_task_retried_and_nothing_counted_twice() {
    let redis = RedisServer::start(&[]);
    // Tasks of 16,000 samples (about half a second each) leave a wide window between the store
    // moving and the first task answering; with 4,000 a task once answered first under CI's load.
    let job = on(
        job("killed", 4, 2, 64_000, "[256, 256]"),
        BackendKind::Process,
        &redis,
    );
    let (sender, events) = mpsc::channel();
    let driver = std::thread::spawn(move || run(&job, &mut Events(sender)));

    let Ok(Event::Started(samples, progress)) = events.recv() else {
        panic!("the first epoch never started");
    };
    // Every function is inside its task: the store has moved, and no task has answered yet (the
    // process backend counts a task's samples when it answers).
    let deadline = Instant::now() + Duration::from_secs(60);
    while store_stats(&redis, "killed").version < 20 {
        assert!(Instant::now() < deadline, "the epoch never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids = worker_pids();
    assert_eq!(pids.len(), 4, "four worker processes: {pids:?}");
    signal(pids[1], "9");
    assert_eq!(
        progress.load(Ordering::Relaxed),
        0,
        "no task had answered when the worker died: its task was in flight"
    );

    let outcome = driver.join().expect("the driver thread");
    assert_eq!(outcome.status.epoch, 2, "both epochs completed");
    // The killed attempt never answered, so its shards are in the epoch's result only through
    // the retry.
    assert_eq!(outcome.status.history[0].samples, samples);
    let reported: u64 = outcome.status.history.iter().map(|r| r.updates).sum();
    assert_eq!(
        store_stats(&redis, "killed").updates,
        reported,
        "the store's update count matches the task results"
    );
}
