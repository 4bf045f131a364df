//! Shared by the test programs that own worker processes (the chaos run, the rolling upgrade):
//! the signal that ends a run early.

/// Waits for Ctrl-C or SIGTERM and says which.
pub async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}
