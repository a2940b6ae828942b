//! `weir`: the broker binary. With no arguments it serves 127.0.0.1:9092 with
//! data in ./weir-data. SIGINT or SIGTERM shut it down gracefully: stop
//! accepting, finish in-flight requests, flush every partition, exit 0.

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// Without `RUST_LOG`: the broker's own information, and openraft's
/// warnings only (it logs several lines at info for every group it opens,
/// and every partition is a group).
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";
/// How long a shutdown waits for open connections to finish their requests.
const SHUTDOWN_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(30);
use weir_node::broker::Broker;
use weir_node::broker::{LossTarget, accept_loss as accept};
use weir_node::config::{Args, Command, Config};
use weir_node::disk::RealDisk;
use weir_node::server::{self, Shutdown};

/// Produce and fetch move megabyte buffers; mimalloc reuses them instead of
/// mapping and faulting in fresh pages for each (measured: page faults and
/// page clearing were ~10% of the broker's CPU under the system allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Errors are printed as their chain of causes and nothing else: a failure
/// to start (a bad setting, a locked directory) is the operator's to fix,
/// and a backtrace would only bury the one line that says how.
fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)))
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::resolve(&args)?;
    config.file_descriptors_max = raise_open_file_limit();
    if let Some(Command::AcceptLoss { topic, partition, offsets_log }) = args.command {
        let target = match (topic, partition) {
            (Some(topic), Some(partition)) if !offsets_log => LossTarget::Partition { topic, partition },
            _ => LossTarget::OffsetsLog,
        };
        return accept_loss(&config, &target);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("weir").build().context("cannot start the runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let raft_listen = config.raft_listen;
    let data_dir = config.data_dir.clone();
    let _lock = weir_node::lock::DataDirLock::acquire(&data_dir)?;
    // Bound first: a joining node registers the address it really has.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: is another process using the port, or is the address not one of this machine's? choose another with --listen"))?;
    let bound = listener.local_addr()?;
    let mut config = config;
    let disk = RealDisk::default();
    weir_node::join::prepare(&mut config, &disk, bound).await?;
    let broker =
        Broker::open(config, Arc::new(disk)).await.with_context(|| format!("cannot open data directory {}", data_dir.display()))?;
    broker.set_advertised(bound);
    if let Some(raft_listen) = raft_listen {
        let peers = tokio::net::TcpListener::bind(raft_listen).await.with_context(|| {
            format!("cannot listen for Raft peers on {raft_listen}: is another process using the port? choose another with --raft-listen")
        })?;
        broker.serve_raft(peers);
    }
    // One machine-readable line on stdout, for scripts and tests that ask for port 0.
    println!("weir listening on {bound}");
    tracing::info!(%bound, data_dir = %data_dir.display(), "serving");
    let (shutdown, rx) = Shutdown::new();
    broker.start_background();
    let server = tokio::spawn(server::serve(listener, broker.clone(), rx));
    wait_for_signal().await?;
    // Still serving: requests meanwhile are answered, or sent to the new leaders.
    tracing::info!("shutting down: handing off leaderships");
    broker.hand_off_leaderships().await;
    tracing::info!("shutting down: finishing in-flight requests");
    shutdown.trigger();
    // Connections finish what they read; one that cannot (a produce waiting
    // out its timeout, a peer that stopped reading) does not hold the
    // shutdown past the drain limit.
    if tokio::time::timeout(SHUTDOWN_DRAIN_MAX, server).await.is_err() {
        tracing::warn!(limit_s = SHUTDOWN_DRAIN_MAX.as_secs(), "connections still open at the drain limit; closing them");
    }
    broker.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Raises the soft open-file limit to the hard one (each partition holds a
/// file open) and returns the limit in force.
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current?, limit.maximum);
    let Some(hard) = hard.filter(|h| *h > soft) else { return Some(soft) };
    match setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(hard), maximum: Some(hard) }) {
        Ok(()) => {
            tracing::info!(from = soft, to = hard, "raised the open-file limit (RLIMIT_NOFILE) to its hard limit");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
            Some(soft)
        }
    }
}

fn accept_loss(config: &Config, target: &LossTarget) -> anyhow::Result<()> {
    // An operator's tool: a mistyped directory is an error, not a new data dir.
    if !config.data_dir.is_dir() {
        anyhow::bail!("data directory {} does not exist: pass the broker's --data-dir", config.data_dir.display());
    }
    let _lock = weir_node::lock::DataDirLock::acquire(&config.data_dir)?;
    match accept(config, Arc::new(RealDisk::default()), target)? {
        None => println!("{target}: recovery reports no loss; nothing to do"),
        Some(a) => println!(
            "accepted the loss of offsets {}..{} ({} record(s)) in {}: {} damaged byte(s) saved to {}; the log continues at offset {}",
            a.loss.from,
            a.loss.to,
            a.loss.to - a.loss.from,
            a.loss.file.display(),
            a.saved_bytes,
            a.saved_to.display(),
            a.next_offset
        ),
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    tokio::select! {
        biased;
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
