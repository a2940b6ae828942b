//! weirctl end to end against the real `weir` binary: create → produce →
//! consume → describe → delete, with JSON output and exit codes.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The `weir` binary beside `weirctl` in the target directory, built if this
/// test runs on its own.
fn weir_binary() -> PathBuf {
    let weirctl = PathBuf::from(env!("CARGO_BIN_EXE_weirctl"));
    let weir = weirctl.with_file_name("weir");
    if !weir.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "-p", "weir-node", "--bin", "weir"]).status().expect("cargo build");
        assert!(status.success(), "building weir failed");
    }
    weir
}

struct Broker(Child, String);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path) -> Broker {
    start_with(dir, &[])
}

fn start_with(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let mut child = Command::new(weir_binary())
        .args(["--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("weir listening on ").expect("listening line").to_owned();
    Broker(child, addr)
}

fn weirctl(addr: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weirctl"))
        .arg("--broker")
        .arg(addr)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weirctl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"))).collect()
}

#[test]
fn create_produce_consume_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr_owned = broker.1.clone();
    let addr = addr_owned.as_str();

    let (code, out, _) = weirctl(addr, &["topic", "create", "events", "--partitions", "2"], None);
    assert_eq!(code, 0);
    assert!(out.contains("created topic events with 2 partition(s)"), "{out}");
    let (code, _, err) = weirctl(addr, &["topic", "create", "events"], None);
    assert_eq!(code, 5, "already exists has its own exit code: {err}");
    let (code, _, err) = weirctl(addr, &["topic", "create", "../etc"], None);
    assert_eq!(code, 1);
    assert!(err.contains("[A-Za-z0-9._-]"), "the message says what is allowed: {err}");

    let (code, out, _) = weirctl(addr, &["--json", "produce", "events", "--partition", "1", "--message", "hello", "--count", "3"], None);
    assert_eq!(code, 0);
    let acks = json_lines(&out);
    assert_eq!(acks.iter().map(|a| a["offset"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(acks.iter().all(|a| a["partition"] == 1 && a["topic"] == "events"));

    let (code, out, _) = weirctl(addr, &["--json", "produce", "events", "--partition", "0", "--key", "k"], Some("one\ntwo\n"));
    assert_eq!(code, 0);
    assert_eq!(json_lines(&out).len(), 2);

    let (code, out, _) = weirctl(addr, &["--json", "consume", "events", "--partition", "0"], None);
    assert_eq!(code, 0);
    let msgs = json_lines(&out);
    assert_eq!(msgs.iter().map(|m| m["value"].as_str().unwrap()).collect::<Vec<_>>(), vec!["one", "two"]);
    assert_eq!(msgs[0]["key"], "k");

    let (code, out, _) = weirctl(addr, &["consume", "events", "--from", "1", "--partition", "1", "--count", "1"], None);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "1/1 hello");

    let (code, out, _) = weirctl(addr, &["--json", "consume", "events"], None);
    assert_eq!(code, 0);
    assert_eq!(json_lines(&out).len(), 5, "all partitions to their current end");

    let (code, out, _) = weirctl(addr, &["--json", "topic", "describe", "events"], None);
    assert_eq!(code, 0);
    let d = &json_lines(&out)[0];
    assert_eq!(d["partitions"][1]["log_end_offset"], 3);
    assert_eq!(d["partitions"][0]["high_watermark"], 2);
    let (code, out, _) = weirctl(addr, &["topic", "describe", "events"], None);
    assert_eq!(code, 0);
    assert!(out.contains("HIGH-WATER"), "{out}");

    let (code, out, err) = weirctl(addr, &["topic", "add-partitions", "events", "--count", "2"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "topic events now has 4 partition(s)");
    let (code, out, _) = weirctl(addr, &["--json", "produce", "events", "--partition", "3", "--message", "new"], None);
    assert_eq!((code, json_lines(&out)[0]["offset"].as_u64()), (0, Some(0)), "a new partition takes produces at once");
    let (code, _, err) = weirctl(addr, &["topic", "add-partitions", "events", "--count", "0"], None);
    assert_ne!(code, 0);
    assert!(err.contains("at least 1"), "{err}");
    let (code, _, err) = weirctl(addr, &["topic", "add-partitions", "missing", "--count", "1"], None);
    assert_eq!(code, 3, "unknown topic: {err}");
    let (code, out, _) = weirctl(addr, &["--json", "topic", "list"], None);
    assert_eq!(code, 0);
    assert_eq!(json_lines(&out)[0]["partitions"], 4);

    let (code, _, _) = weirctl(addr, &["consume", "missing"], None);
    assert_eq!(code, 3, "unknown topic exit code");
    let (code, _, _) = weirctl(addr, &["topic", "delete", "events"], None);
    assert_eq!(code, 0);
    let (code, out, _) = weirctl(addr, &["--json", "topic", "list"], None);
    assert_eq!((code, out.trim()), (0, ""));

    drop(broker);
    let (code, _, err) = weirctl(addr, &["topic", "list"], None);
    assert_eq!(code, 4, "no broker: {err}");
    assert!(err.contains("is the broker running"), "{err}");
}

/// Lines piped into `weirctl produce` are stored in the order given, whether
/// they are routed by key, round-robin or to a named partition: the
/// producer's first sends all miss the metadata cache at once, and a later
/// send must never overtake an earlier one (10 of 10 runs reordered before
/// the SDK sequenced its sends).
#[test]
fn piped_lines_keep_their_order_on_every_routing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.1.as_str();
    let lines: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let input = lines.join("\n") + "\n";
    for (topic, routing) in [("keyed", vec!["--key", "user-1"]), ("robin", vec![]), ("pinned", vec!["--partition", "0"])] {
        let (code, _, err) = weirctl(addr, &["topic", "create", topic, "--partitions", "1"], None);
        assert_eq!(code, 0, "{err}");
        for _ in 0..3 {
            let mut args = vec!["--json", "produce", topic];
            args.extend(routing.iter().copied());
            let (code, out, err) = weirctl(addr, &args, Some(&input));
            assert_eq!(code, 0, "{err}");
            assert_eq!(json_lines(&out).len(), 200);
        }
        let (code, out, _) = weirctl(addr, &["--json", "consume", topic, "--partition", "0"], None);
        assert_eq!(code, 0);
        let stored: Vec<String> = json_lines(&out).iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect();
        let expected: Vec<String> = lines.iter().cycle().take(600).cloned().collect();
        assert_eq!(stored, expected, "{topic}: lines stored out of order");
    }
}

/// Errors say what happened: a malformed address is a usage error, a
/// server that is not Weir is named as such, a full broker says so, and
/// "start a broker" is suggested only when nothing listens.
#[test]
fn connection_errors_say_what_happened() {
    for bad in ["localhost", "127.0.0.1:", ":9092", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:9092,", "127.0.0.1:9092,,127.0.0.1:9093"] {
        let (code, _, err) = weirctl(bad, &["topic", "list"], None);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("host:port"), "{bad}: {err}");
    }

    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in http.incoming().take(1) {
            let mut s = s.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    let (code, _, err) = weirctl(&http_addr, &["topic", "list"], None);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not a Weir broker") && err.contains("HTTP"), "{err}");
    assert!(!err.contains("is the broker running"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let broker = start_with(dir.path(), &["--connections-max", "1"]);
    let _hog = std::net::TcpStream::connect(&broker.1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (code, _, err) = weirctl(&broker.1, &["topic", "list"], None);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("connection limit") && !err.contains("is the broker running"), "{err}");
}

/// `--broker A,B`: an unreachable first broker is skipped, and a list of
/// only unreachable ones names every address tried.
#[test]
fn a_broker_list_is_tried_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let list = format!("{gone},{}", broker.1);
    let (code, out, err) = weirctl(&list, &["topic", "create", "t"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created topic t"), "{out}");
    let (code, out, _) = weirctl(&list, &["--json", "produce", "t", "--message", "m"], None);
    assert_eq!(code, 0);
    assert_eq!(json_lines(&out)[0]["offset"], 0, "{out}");
    let gone2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (code, _, err) = weirctl(&format!("{gone},{gone2}"), &["topic", "list"], None);
    assert_ne!(code, 0);
    assert!(err.contains(&gone) && err.contains(&gone2), "every address is named: {err}");
}
