//! Joining a running cluster (`weir --join HOST:PORT`), before the broker
//! opens. A node with an empty data directory finds the metadata group's
//! leader through any member's client port and asks to join
//! (`JoinCluster`). The leader registers it (under `--node-id`, or a fresh
//! id) and adds it to the metadata group as a learner; once caught up it is
//! promoted to voter, up to five (see `broker::membership`). The answer is
//! made durable in `meta/cluster.json` before the node opens, so a restart
//! needs no `--join`: a member's data directory says it is one.
//!
//! A retried join is safe: the request carries the data directory's random
//! id (`meta/data-dir-id`, written before the first ask), and the cluster
//! answers a directory it registered with the same node id.

use crate::config::{Config, parse_members};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use weir_client::{Admin, Client, ClientConfig, ClientError};
use weir_core::disk::{Disk, read_small, write_atomic};
use weir_net::message::{JoinClusterRequest, Response};
use weir_net::{ErrorCode, Request};

/// How long a join keeps trying the listed members.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const CLUSTER_FILE: &str = "cluster.json";

/// What a joined node keeps of its join (`meta/cluster.json`).
#[derive(Debug, Serialize, Deserialize)]
struct Joined {
    node_id: u64,
    /// The cluster's `initial_members`, as its leader answered.
    initial_members: String,
}

fn meta_dir(config: &Config) -> PathBuf {
    config.data_dir.join("meta")
}

/// Readies `config` for a cluster this node joined or is joining: a
/// member's data directory supplies its node id and the cluster's first
/// voters; a new node with `join` asks the cluster first. Anything else is
/// left as configured.
/// `client_address` is where this node's client listener is bound.
pub async fn prepare(config: &mut Config, disk: &dyn Disk, client_address: std::net::SocketAddr) -> anyhow::Result<()> {
    let meta = meta_dir(config);
    if let Some(raw) = read_small(disk, &meta.join(CLUSTER_FILE), 64 << 10)? {
        let joined: Joined = serde_json::from_slice(&raw)
            .with_context(|| format!("{} is damaged: restore it or remove the node", meta.join(CLUSTER_FILE).display()))?;
        return adopt(config, joined, true);
    }
    if config.join.is_empty() {
        if config.initial_members.is_empty() && config.raft_listen.is_some() {
            bail!("raft_listen needs initial_members (the cluster's voters) or join; without them the broker runs alone");
        }
        let single_topics = config.data_dir.join("topics");
        let single = disk.exists(&single_topics) && !disk.list_dir(&single_topics)?.is_empty();
        // (A single broker's directory is refused when it opens.)
        if !config.initial_members.is_empty() && !single {
            // An initial member records which cluster it was started in:
            // its data directory then refuses to start in another.
            // The directory must be this node's before it is marked so.
            crate::broker::store::claim_node_id(disk, &config.data_dir, config.node_id)?;
            let joined =
                Joined { node_id: config.node_id, initial_members: crate::broker::membership::format_members(&config.initial_members) };
            crate::broker::store::ensure_dir(disk, &meta)?;
            write_atomic(disk, &meta, CLUSTER_FILE, &serde_json::to_vec_pretty(&joined).expect("serialises"))?;
        }
        return Ok(());
    }
    for inner in ["topics", "replicas", "internal"] {
        let dir = config.data_dir.join(inner);
        if disk.exists(&dir) && !disk.list_dir(&dir)?.is_empty() {
            bail!(
                "{} already holds data ({}): --join needs an empty --data-dir (a node that was a member keeps meta/cluster.json)",
                config.data_dir.display(),
                dir.display()
            );
        }
    }
    let data_dir_id = crate::broker::store::data_dir_id(disk, &config.data_dir)?;
    let raft_address = config.raft_listen.map(|a| a.to_string()).unwrap_or_default();
    let request = JoinClusterRequest {
        node_id: if config.node_id_explicit { config.node_id } else { 0 },
        // Never an unspecified IP (0.0.0.0): the Raft address's, which peers reach.
        client_address: match config.raft_listen {
            Some(r) if client_address.ip().is_unspecified() => std::net::SocketAddr::new(r.ip(), client_address.port()).to_string(),
            _ => client_address.to_string(),
        },
        raft_address,
        data_dir_id,
    };
    let answer = ask(&config.join, &request).await?;
    let joined = Joined { node_id: answer.0, initial_members: answer.1 };
    let json = serde_json::to_vec_pretty(&joined).expect("serialises");
    crate::broker::store::ensure_dir(disk, &meta)?;
    write_atomic(disk, &meta, CLUSTER_FILE, &json)?;
    tracing::info!(node = joined.node_id, via = ?config.join, "joined the cluster");
    adopt(config, joined, false)
}

fn adopt(config: &mut Config, joined: Joined, restart: bool) -> anyhow::Result<()> {
    if config.node_id_explicit && config.node_id != joined.node_id {
        bail!(
            "{} belongs to node {} of its cluster, and this broker was started as node {}: start it with --node-id {} (or without one)",
            config.data_dir.display(),
            joined.node_id,
            config.node_id,
            joined.node_id
        );
    }
    if restart && !config.join.is_empty() {
        tracing::info!(node = joined.node_id, "already a member of the cluster: --join is not needed and is ignored");
    }
    let members = parse_members(&joined.initial_members).map_err(anyhow::Error::msg)?;
    if !config.initial_members.is_empty() && config.initial_members != members {
        bail!(
            "{} belongs to the cluster whose initial members are {}, and this broker was started with {}: it is another cluster's data directory; start it with that cluster's initial_members (or none), or give this node an empty --data-dir",
            config.data_dir.display(),
            joined.initial_members,
            crate::broker::membership::format_members(&config.initial_members)
        );
    }
    if config.raft_listen.is_none() {
        // An initial member restarted without its flags listens where the
        // cluster expects it.
        config.raft_listen = members.get(&joined.node_id).and_then(|a| a.parse().ok());
    }
    if config.raft_listen.is_none() && !members.contains_key(&joined.node_id) {
        bail!("node {} joined its cluster with a Raft address: start it with --raft-listen again", joined.node_id);
    }
    config.node_id = joined.node_id;
    config.initial_members = members;
    config.joined = !config.initial_members.contains_key(&joined.node_id);
    config.join.clear();
    Ok(())
}

/// Asks the metadata leader, found through any of `members`, to take this
/// node in: (node id, the cluster's initial members).
async fn ask(members: &[String], request: &JoinClusterRequest) -> anyhow::Result<(u64, String)> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let config = ClientConfig { brokers: members.to_vec(), timeout: Duration::from_secs(5), retries: 0, ..Default::default() };
    let client = Client::unconnected(config);
    let admin = Admin::new(&client);
    let mut last = String::from("no member answered");
    loop {
        for addr in members {
            match ask_one(&client, &admin, addr, request).await {
                Ok(answer) => return Ok(answer),
                Err(JoinError::Refused(e)) => bail!("the cluster refused this node: {e}"),
                Err(JoinError::Retry(why)) => {
                    tracing::info!(through = %addr, %why, "join not taken yet; trying again");
                    last = format!("{addr}: {why}");
                }
            }
        }
        if tokio::time::Instant::now() + Duration::from_millis(500) >= deadline {
            bail!(
                "cannot join the cluster through {} within {JOIN_TIMEOUT:?} ({last}): --join must name a running member's client address",
                members.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

enum JoinError {
    Refused(String),
    Retry(String),
}

async fn ask_one(client: &Client, admin: &Admin, addr: &str, request: &JoinClusterRequest) -> Result<(u64, String), JoinError> {
    let retry = |e: ClientError| JoinError::Retry(e.to_string());
    let status = admin.cluster_status_at(addr).await.map_err(retry)?;
    if !status.clustered {
        return Err(JoinError::Refused(format!("{addr} is a single broker, not a cluster member")));
    }
    let leader = status.metadata_leader.ok_or_else(|| JoinError::Retry(format!("{addr} knows no metadata leader")))?;
    let leader_addr = status
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .map(|n| n.address.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| JoinError::Retry(format!("{addr} does not know where node {leader} listens")))?;
    match client.request_at(&leader_addr, &Request::JoinCluster(request.clone())).await {
        Ok(Response::JoinCluster(r)) => Ok((r.node_id, r.initial_members)),
        Ok(other) => Err(JoinError::Refused(format!("{leader_addr} answered a join with {:?}", other.api_key()))),
        Err(e) if e.is_retriable() || e.code() == Some(ErrorCode::NotLeader) => Err(retry(e)),
        Err(e) => Err(JoinError::Refused(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::RealDisk;
    use std::path::Path;

    fn config(dir: &Path) -> Config {
        Config { data_dir: dir.to_path_buf(), raft_listen: Some("127.0.0.1:9195".parse().unwrap()), ..Config::default() }
    }

    #[tokio::test]
    async fn a_members_data_dir_says_who_it_is_and_a_wrong_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = RealDisk::default();
        let meta = dir.path().join("meta");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join(CLUSTER_FILE), r#"{"node_id": 4, "initial_members": "1@127.0.0.1:9192,2@127.0.0.1:9193"}"#).unwrap();
        let bound = "127.0.0.1:9095".parse().unwrap();
        let mut c = Config { join: vec!["127.0.0.1:9092".into()], ..config(dir.path()) };
        prepare(&mut c, &disk, bound).await.unwrap();
        assert_eq!((c.node_id, c.joined, c.initial_members.len()), (4, true, 2));
        assert!(c.join.is_empty(), "--join is ignored once a member");
        let mut c = Config { node_id: 2, node_id_explicit: true, ..config(dir.path()) };
        let err = prepare(&mut c, &disk, bound).await.unwrap_err();
        assert!(err.to_string().contains("belongs to node 4"), "{err}");
        let mut c = Config { raft_listen: None, ..config(dir.path()) };
        let err = prepare(&mut c, &disk, bound).await.unwrap_err();
        assert!(err.to_string().contains("--raft-listen"), "{err}");
    }

    #[tokio::test]
    async fn an_initial_members_data_dir_refuses_another_cluster_and_restarts_without_flags() {
        let dir = tempfile::tempdir().unwrap();
        let disk = RealDisk::default();
        let bound = "127.0.0.1:9095".parse().unwrap();
        let members = parse_members("1@127.0.0.1:9192,2@127.0.0.1:9193").unwrap();
        let mut c = Config { node_id: 2, node_id_explicit: true, initial_members: members.clone(), ..config(dir.path()) };
        prepare(&mut c, &disk, bound).await.unwrap();
        assert!(!c.joined);
        // Restarted with nothing but its data directory: the same node.
        let mut c = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        prepare(&mut c, &disk, bound).await.unwrap();
        assert_eq!((c.node_id, c.joined, &c.initial_members), (2, false, &members));
        assert_eq!(c.raft_listen, Some("127.0.0.1:9193".parse().unwrap()));
        // Started in another cluster (other members): refused, saying why.
        let other = parse_members("1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7003").unwrap();
        let mut c = Config { node_id: 2, node_id_explicit: true, initial_members: other, ..config(dir.path()) };
        let err = prepare(&mut c, &disk, bound).await.unwrap_err().to_string();
        assert!(err.contains("another cluster's data directory") && err.contains("127.0.0.1:9193"), "{err}");
        // Another node's directory is refused before anything is written to it.
        let mut c = Config { node_id: 1, node_id_explicit: true, initial_members: members, ..config(dir.path()) };
        assert!(prepare(&mut c, &disk, bound).await.is_err());
        let kept: Joined = serde_json::from_slice(&std::fs::read(dir.path().join("meta").join(CLUSTER_FILE)).unwrap()).unwrap();
        assert_eq!(kept.node_id, 2);
    }

    #[tokio::test]
    async fn a_raft_address_without_a_cluster_and_a_join_into_data_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = RealDisk::default();
        let bound = "127.0.0.1:9095".parse().unwrap();
        let err = prepare(&mut config(dir.path()), &disk, bound).await.unwrap_err();
        assert!(err.to_string().contains("needs initial_members"), "{err}");
        std::fs::create_dir_all(dir.path().join("topics").join("orders")).unwrap();
        let mut c = Config { join: vec!["127.0.0.1:1".into()], ..config(dir.path()) };
        let err = prepare(&mut c, &disk, bound).await.unwrap_err();
        assert!(err.to_string().contains("needs an empty --data-dir"), "{err}");
    }
}
