//! Starts the real `weir` binary on an ephemeral port with a temporary data
//! directory, for integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weir_client::{Client, ClientConfig};

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
        let listen = addr.unwrap_or("127.0.0.1:0");
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--data-dir", dir.to_str().unwrap(), "--listen", listen])
            .args(extra)
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start weir");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read listening line");
        let addr = line.trim().strip_prefix("weir listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
        Broker { child, addr, dir: dir.to_path_buf(), extra: extra.iter().map(|s| s.to_string()).collect() }
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

    /// Restarts on the same directory and port.
    pub fn restart(&mut self) {
        let addr = self.addr.clone();
        // The old port may linger briefly in the kernel; retry a few times.
        for attempt in 0.. {
            let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["--data-dir", self.dir.to_str().unwrap(), "--listen", &addr])
                .args(&self.extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start weir");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read line");
            if line.starts_with("weir listening on ") {
                self.child = child;
                return;
            }
            let _ = child.wait();
            assert!(attempt < 50, "broker did not restart on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
