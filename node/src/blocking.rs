//! Running blocking disk work off the async workers. In production that is
//! tokio's blocking pool; in simulation the disk is in memory and madsim
//! forbids real threads, so the work runs inline and stays deterministic.

/// Runs `f` where blocking is allowed, then pays the latency a simulated
/// `disk` charges for what it did, so whoever reports a write or sync
/// reports it no earlier than the disk would have finished.
pub async fn run_disk<F, R>(disk: &dyn weir_core::disk::Disk, f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let done = run(f).await;
    let owed = disk.take_latency();
    if !owed.is_zero() {
        tokio::time::sleep(owed).await;
    }
    done
}

/// Runs `f` where blocking is allowed and returns its result.
pub async fn run<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(not(madsim))]
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            // The closure panicked: surface it where the caller awaits.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down and never ran it (a
            // vote save at exit panicked here). Nothing was done, and this
            // caller is about to be dropped with the runtime: wait for that.
            Err(_) => std::future::pending().await,
        }
    }
    #[cfg(madsim)]
    {
        f()
    }
}
