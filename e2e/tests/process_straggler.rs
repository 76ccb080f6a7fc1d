//! Straggler handling of the process backend: one worker is frozen (SIGSTOP) in the middle of its
//! task. Once the other tasks are done and the frozen one is `stragglerFactor` times late, its task
//! is dispatched again on an idle function; the epoch ends without waiting for the frozen worker,
//! and nothing is counted twice. (A file of its own, so the workers it sees are its own.)

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Event, Events, job, on, run, signal, store_stats, worker_pids};
use siren_crds::BackendKind;
use siren_e2e::RedisServer;

#[test]
fn a_frozen_workers_task_is_run_again_elsewhere_and_counted_once() {
    let redis = RedisServer::start(&[]);
    let mut job = on(
        job("frozen", 4, 2, 16_000, "[256, 256]"),
        BackendKind::Process,
        &redis,
    );
    job.spec.backend.straggler_factor = 1.5;
    job.spec.backend.task_timeout_seconds = 600;
    let (sender, events) = mpsc::channel();
    let driver = std::thread::spawn(move || run(&job, &mut Events(sender)));

    let Ok(Event::Started(samples, _)) = events.recv() else {
        panic!("the first epoch never started");
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while store_stats(&redis, "frozen").version < 20 {
        assert!(Instant::now() < deadline, "the epoch never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids = worker_pids();
    assert_eq!(pids.len(), 4, "four worker processes: {pids:?}");
    signal(pids[2], "STOP");

    // The worker stays frozen until the epoch is over: the epoch cannot be waiting for it.
    let first = loop {
        match events.recv_timeout(Duration::from_secs(120)) {
            Ok(Event::Finished(record)) => break record,
            Ok(Event::Started(..)) => continue,
            Err(_) => panic!("the epoch never finished while a worker was frozen"),
        }
    };
    signal(pids[2], "CONT");
    assert_eq!(
        first.samples, samples,
        "every shard trained, once in the result"
    );
    assert!(first.seconds < 120.0);

    let outcome = driver.join().expect("the driver thread");
    assert_eq!(outcome.status.epoch, 2);
    let reported: u64 = outcome.status.history.iter().map(|r| r.updates).sum();
    assert_eq!(
        store_stats(&redis, "frozen").updates,
        reported,
        "the re-dispatched task's updates are in the store once"
    );
}
