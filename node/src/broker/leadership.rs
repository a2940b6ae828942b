//! Leadership hand-offs. A node that stops (SIGTERM) first hands every
//! group it leads to a caught-up peer, so clients never wait out an
//! election timeout; and leaderships return to each partition's preferred
//! (first) replica once it is caught up, on a timer
//! (`leader_balance_interval_ms`) and on demand (`weirctl cluster
//! balance-leaders`), so a node that restarted gets its share back.
//!
//! Storms are avoided by construction: a hand-off goes only to a voter that
//! holds the whole log and was heard lately, at most
//! [`BALANCE_CONCURRENCY`] at a time, and a partition whose hand-off failed
//! is left alone for [`BALANCE_BACKOFF`] (its preferred replica may be
//! unable to lead: a damaged copy refuses).

use super::Broker;
use super::partition::Partition;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weir_net::message::BalanceLeadersResponse;

/// How long one hand-off may take before this node leads on.
pub const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(3);
/// Hand-offs under way at once while balancing.
pub const BALANCE_CONCURRENCY: usize = 8;
/// How long a partition whose hand-off failed is not balanced again.
pub const BALANCE_BACKOFF: Duration = Duration::from_secs(300);

/// What balancing remembers between passes.
#[derive(Debug, Default)]
pub struct Balance {
    /// Groups whose last hand-off failed, until when they are skipped.
    backoff: Mutex<BTreeMap<u64, Instant>>,
    /// One pass at a time (timer and operator alike).
    pass: tokio::sync::Mutex<()>,
}

impl Broker {
    /// Every replica this node holds with the replica preferred to lead it:
    /// a topic partition's first replica; the internal logs prefer none.
    fn replicas_with_preference(&self) -> Vec<(String, Arc<Partition>, Option<u64>)> {
        let mut all = Vec::new();
        for t in self.topics.read().unwrap_or_else(|p| p.into_inner()).values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if let Some(p) = p {
                    all.push((format!("{}/{i}", t.name), p.clone(), t.assignment.get(i).and_then(|r| r.first().copied())));
                }
            }
        }
        if let Some(p) = self.groups.offsets_partition() {
            all.push(("the offsets log".to_owned(), p, None));
        }
        if let Some(c) = &self.cluster {
            all.push(("the metadata log".to_owned(), c.log.clone(), None));
        }
        all
    }

    /// Hands every group this node leads to a caught-up peer, all at once,
    /// each within [`HAND_OFF_TIMEOUT`]: the first step of a graceful stop.
    /// A group no peer can take is left to the election its voters hold
    /// once this node is gone.
    pub async fn hand_off_leaderships(&self) {
        if self.cluster.is_none() {
            return;
        }
        let started = Instant::now();
        let jobs: Vec<_> = self
            .replicas_with_preference()
            .into_iter()
            .filter_map(|(label, p, preferred)| p.hand_off_target(preferred).map(|target| (label, p, target)))
            .collect();
        if jobs.is_empty() {
            return;
        }
        let results = futures::future::join_all(jobs.into_iter().map(|(label, p, target)| async move {
            let r = p.hand_off(target, HAND_OFF_TIMEOUT).await;
            if let Err(e) = &r {
                tracing::warn!(what = %label, to = target, error = %e, "could not hand off a leadership before stopping: its voters elect a leader");
            }
            r.is_ok()
        }))
        .await;
        let handed = results.iter().filter(|ok| **ok).count();
        tracing::info!(
            handed,
            failed = results.len() - handed,
            ms = started.elapsed().as_millis() as u64,
            "leaderships handed off before stopping"
        );
    }

    /// One balancing pass: every topic partition this node leads whose
    /// preferred replica is another node, caught up and heard lately, is
    /// handed to it.
    pub async fn balance_leaders(&self) -> BalanceLeadersResponse {
        let _pass = self.balance.pass.lock().await;
        let now = Instant::now();
        self.balance.backoff.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, until| *until > now);
        let backoff = self.balance.backoff.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let jobs: Vec<_> = self
            .replicas_with_preference()
            .into_iter()
            .filter_map(|(label, p, preferred)| {
                let preferred = preferred.filter(|n| *n != self.config.node_id)?;
                let group = p.group_id();
                (!backoff.contains_key(&group) && p.leads_and_caught_up(preferred)).then_some((label, p, preferred, group))
            })
            .collect();
        let results: Vec<bool> = futures::stream::iter(jobs)
            .map(|(label, p, preferred, group)| async move {
                match p.hand_off(preferred, HAND_OFF_TIMEOUT).await {
                    Ok(()) => {
                        tracing::info!(what = %label, to = preferred, "leadership returned to the preferred replica");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(what = %label, to = preferred, error = %e, "could not return a leadership to its preferred replica: not retried for a while");
                        self.balance.backoff.lock().unwrap_or_else(|p| p.into_inner()).insert(group, Instant::now() + BALANCE_BACKOFF);
                        false
                    }
                }
            })
            .buffer_unordered(BALANCE_CONCURRENCY)
            .collect()
            .await;
        let moved = results.iter().filter(|ok| **ok).count() as u32;
        BalanceLeadersResponse { node_id: self.config.node_id, moved, failed: results.len() as u32 - moved }
    }
}
