//! Harnesses for end-to-end tests: real servers on free loopback ports, stopped when dropped.

mod redis_server;
mod s3_server;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

pub use redis_server::RedisServer;
pub use s3_server::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};

/// A loopback port that is free now and that no other caller in this process will be given, so
/// that parallel tests (one of which may stop and restart a server on its port) never collide.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 20_000) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if port > 20_000 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
