//! Logs of the function binaries: JSON lines on stderr, filtered by `$SIREN_LOG` (default `info`),
//! which is what Knative's, OpenFaaS's and Lambda's log collectors pick up.

/// Installs the global subscriber. `timestamps: false` where the platform stamps every line itself
/// (Lambda's CloudWatch Logs).
pub fn init_json_logs(timestamps: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIREN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if timestamps {
        logs.init();
    } else {
        logs.without_time().init();
    }
}
