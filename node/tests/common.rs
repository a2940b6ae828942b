//! Starts the real `weir` binary on an ephemeral port with a temporary data
//! directory, for integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weir_client::{Client, ClientConfig, Consumer, Message, StartOffset};

pub struct Broker {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
    extra: Vec<String>,
}

impl Broker {
    /// Starts a broker on `dir` (keeps `addr`'s port if given, so clients can reconnect).
    pub fn start(dir: &Path, addr: Option<&str>) -> Broker {
        Self::start_with(dir, addr, &[])
    }

    /// As `start`, with extra command-line arguments.
    pub fn start_with(dir: &Path, addr: Option<&str>, extra: &[&str]) -> Broker {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, line) = spawn(dir, addr.unwrap_or("127.0.0.1:0"), &extra);
        let addr = line.trim().strip_prefix("weir listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
        Broker { child, addr, dir: dir.to_path_buf(), extra }
    }

    pub async fn client(&self) -> Client {
        Client::connect(ClientConfig { brokers: vec![self.addr.clone()], timeout: Duration::from_secs(10), ..Default::default() })
            .await
            .expect("connect")
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        self.child.wait().expect("wait").code()
    }

    /// SIGTERM, then waits at most `limit`: the exit code, or `None` if the
    /// broker is still running then (it is killed).
    pub fn terminate_within(&mut self, limit: std::time::Duration) -> Option<i32> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill9();
        None
    }

    /// Restarts on the same directory, port and arguments.
    pub fn restart(&mut self) {
        // The old port may linger briefly in the kernel; retry a few times.
        for attempt in 0.. {
            let (mut child, line) = spawn(&self.dir, &self.addr, &self.extra);
            if line.starts_with("weir listening on ") {
                self.child = child;
                return;
            }
            let _ = child.wait();
            assert!(attempt < 50, "broker did not restart on {}", self.addr);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts the binary and returns it with the first line it printed.
fn spawn(dir: &Path, listen: &str, extra: &[String]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--data-dir", dir.to_str().unwrap(), "--listen", listen])
        .args(extra)
        .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start weir");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the listening line");
    (child, line)
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads every message of a partition from the start.
pub async fn read_all(client: &Client, topic: &str, partition: u32) -> Vec<Message> {
    let consumer = Consumer::new(client);
    let end = consumer.offset_for(topic, partition, StartOffset::Latest).await.unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < end {
        let r = consumer.fetch_from(topic, partition, offset).await.unwrap();
        assert!(!r.messages.is_empty(), "no progress at {offset} of {end}");
        offset = r.next_offset;
        out.extend(r.messages);
    }
    out
}

/// kcat (librdkafka 2.0.x), installed by `ci/install-kcat` when missing.
pub fn kcat() -> Command {
    if Command::new("kcat").arg("-V").output().is_err() {
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-kcat")).status().expect("run ci/install-kcat");
        assert!(status.success(), "ci/install-kcat failed");
    }
    Command::new("kcat")
}
