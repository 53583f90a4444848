//! The `corecache` binary itself: start-up errors, pinning, signals.

mod common;
#[path = "common/tls.rs"]
mod pki;

use common::{KillOnDrop, Raw, Scratch};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_corecache");

/// Runs the binary expecting it to refuse to start; returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{args:?} should exit 2");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

/// Starts the binary on a free port and waits for its "listening" line.
fn spawn(args: &[&str]) -> (KillOnDrop, SocketAddr) {
    let (child, addr, _) = spawn_logging(args);
    (child, addr)
}

/// [`spawn`], also returning what the server logged before its
/// "listening" line.
fn spawn_logging(args: &[&str]) -> (KillOnDrop, SocketAddr, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let addr = loop {
        let line = lines.next().expect("server logs before exiting").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
        before.push(line);
    };
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), addr, before)
}

fn signal(child: &KillOnDrop, signal: i32) {
    // SAFETY: kill(2) on a child we own.
    assert_eq!(unsafe { libc_kill(child.0.id() as i32, signal) }, 0);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

#[test]
fn bad_settings_stop_start_up_with_one_line_and_status_2() {
    let allowed = corecache::config::allowed_cpus();
    let cpus = format!(
        "corecache: --cpus: CPU 4096 is not one this process may use (allowed: {allowed:?})\n"
    );
    for (args, line) in [
        (
            &["--threads", "0"][..],
            "corecache: --threads: must be at least 1\n",
        ),
        (
            &["-m", "lots"],
            "corecache: --memory: 'lots' is not a size (examples: 1048576, 512k, 1m, 2g)\n",
        ),
        (&["--cpus", "4096"], &cpus),
        (
            &["--ttl-tick", "often"],
            "corecache: --ttl-tick: 'often' is not a duration (expected number at 0)\n",
        ),
        (
            &["--config", "/nonexistent.toml"],
            "corecache: --config /nonexistent.toml: No such file or directory (os error 2)\n",
        ),
    ] {
        assert_eq!(refused(args), line, "{args:?}");
    }
    // clap refuses what it parses itself, with its own multi-line usage.
    assert!(refused(&["--runtime", "fibers"]).contains("--runtime"));
}

#[test]
fn tls_files_that_cannot_be_used_stop_start_up_naming_the_setting() {
    let pki = pki::Pki::new("cli");
    let path = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let (cert, key, ca) = (path(&pki.server_cert), path(&pki.server_key), path(&pki.ca));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(Vec<&str>, &str, &str); 6] = [
        (
            vec!["--tls-cert", "/nonexistent.pem", "--tls-key", &key],
            "--tls-cert",
            "/nonexistent.pem",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", "/nonexistent.pem"],
            "--tls-key",
            "/nonexistent.pem",
        ),
        // A certificate where the key should be.
        (
            vec!["--tls-cert", &cert, "--tls-key", &cert],
            "--tls-key",
            &cert,
        ),
        // Another certificate's key.
        (
            vec!["--tls-cert", &ca, "--tls-key", &key],
            "--tls-key",
            "does not fit",
        ),
        // A key where the CA certificates should be.
        (
            vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &key],
            "--tls-ca",
            "no PEM certificate",
        ),
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-listen",
                &taken,
            ],
            "--tls-listen",
            "in use",
        ),
    ];
    for (args, setting, detail) in cases {
        let stderr = refused(&[&["--port", "0"][..], &args].concat());
        assert!(
            stderr.starts_with(&format!("corecache: {setting} ")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(detail), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn an_auth_file_that_cannot_be_used_stops_start_up_naming_it() {
    let dir = Scratch::new("cli-users");
    let path = dir.write("users", "alice:secret\nbob\n");
    let file = path.to_str().unwrap();
    for (args, detail) in [
        (
            ["--auth-file", "/nonexistent"],
            "/nonexistent: No such file",
        ),
        (["-Y", file], "line 2 is not user:password"),
    ] {
        let stderr = refused(&[&["--port", "0"][..], &args].concat());
        assert!(stderr.starts_with("corecache: --auth-file "), "{stderr}");
        assert!(stderr.contains(detail), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_port_already_bound_is_refused() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let stderr = refused(&["--port", &port]);
    assert!(
        stderr.contains("--listen") && stderr.contains("in use"),
        "{stderr}"
    );
    // A running corecache also holds its port against a second one, even
    // though its own listeners share the port with SO_REUSEPORT.
    let (mut first, addr) = spawn(&["--threads", "2", "--no-pin"]);
    let stderr = refused(&["--port", &addr.port().to_string(), "--threads", "2"]);
    assert!(stderr.contains("in use"), "{stderr}");
    signal(&first, SIGTERM);
    first.0.wait().unwrap();
}

#[test]
fn the_shipped_config_file_runs() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/default.toml");
    let (mut child, addr) = spawn(&["--config", config, "--no-pin"]);
    let mut c = Raw::connect(addr);
    c.expect(
        "set a 0 0 1\r\n1\r\nget a\r\n",
        "STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\n",
    );
    signal(&child, SIGINT);
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn each_runtime_thread_is_pinned_to_its_own_cpu() {
    let allowed = corecache::config::allowed_cpus();
    if allowed.len() < 2 {
        // A one-CPU runner cannot show two pinned threads; the start-up path
        // is still covered by the other tests.
        eprintln!(
            "only {} CPU allowed; skipping the two-thread pin check",
            allowed.len()
        );
        return;
    }
    let cpus = format!("{},{}", allowed[0], allowed[1]);
    let (mut child, addr) = spawn(&["--threads", "2", "--cpus", &cpus]);
    let pinned = thread_cpus(child.0.id());
    assert_eq!(
        pinned,
        [
            ("corecache-0".to_string(), allowed[0].to_string()),
            ("corecache-1".to_string(), allowed[1].to_string()),
        ]
    );
    let mut c = Raw::connect(addr);
    c.expect(
        "version\r\n",
        &format!("VERSION 1.6.18-corecache-{}\r\n", env!("CARGO_PKG_VERSION")),
    );
    signal(&child, SIGTERM);
    assert!(child.0.wait().unwrap().success());
}

/// Each `corecache-N` thread's allowed CPUs, by thread name.
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap();
        if !name.starts_with("corecache-") {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let list = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        threads.push((name.trim().to_string(), list));
    }
    threads.sort();
    threads
}

/// The default pinning rule, as the binary applies and logs it: a thread
/// for every allowed CPU runs unpinned (each thread may use every CPU the
/// process may), fewer threads are pinned, and the start-up log says
/// which and why.
#[test]
fn threads_are_pinned_by_default_only_when_they_leave_cpus_free() {
    let allowed = corecache::config::allowed_cpus();
    let process = {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string()
    };
    let threads = allowed.len().to_string();
    let (mut child, _, log) = spawn_logging(&["--threads", &threads]);
    assert!(
        log.iter()
            .any(|l| l.contains("threads not pinned: a thread for every allowed CPU")),
        "{log:?}"
    );
    let seen = thread_cpus(child.0.id());
    assert_eq!(seen.len(), allowed.len());
    assert!(seen.iter().all(|(_, list)| *list == process), "{seen:?}");
    signal(&child, SIGTERM);
    assert!(child.0.wait().unwrap().success());
    if allowed.len() < 2 {
        eprintln!("one CPU allowed: no thread count leaves one free");
        return;
    }
    let (mut child, _, log) = spawn_logging(&["--threads", "1"]);
    assert!(
        log.iter()
            .any(|l| l.contains("threads pinned: fewer threads than allowed CPUs")),
        "{log:?}"
    );
    assert_eq!(
        thread_cpus(child.0.id()),
        [("corecache-0".to_string(), allowed[0].to_string())]
    );
    signal(&child, SIGTERM);
    assert!(child.0.wait().unwrap().success());
}

/// `bytes_read` from `stats` on `c`. The reply counts the 7 bytes of the
/// `stats` request that asked for it.
fn bytes_read(c: &mut Raw) -> u64 {
    let stats = c.stats("");
    let (_, value) = stats.iter().find(|(k, _)| k == "bytes_read").unwrap();
    value.parse().unwrap()
}

#[test]
fn sigterm_answers_what_was_read_then_exits_zero() {
    for runtime in ["thread-per-core", "work-stealing"] {
        let (mut child, addr) = spawn(&["--threads", "2", "--no-pin", "--runtime", runtime]);
        let mut busy = Raw::connect(addr);
        let mut idle = Raw::connect(addr);
        let value = "v".repeat(500_000);
        busy.expect(
            &format!(
                "set big 0 0 {}\r\n{value}\r\nset small 0 0 1\r\ns\r\n",
                value.len()
            ),
            "STORED\r\nSTORED\r\n",
        );
        // 8 MB of replies, more than the socket buffers hold, so the server
        // is still writing them when the signal comes; then half a request.
        let mut burst = String::new();
        let mut expected = String::new();
        for i in 0..16 {
            burst += &format!("get big\r\nincr n{i} 1\r\nget small\r\n");
            expected += &format!("VALUE big 0 {}\r\n{value}\r\nEND\r\n", value.len());
            expected += "NOT_FOUND\r\nVALUE small 0 1\r\ns\r\nEND\r\n";
        }
        burst += "get sm";
        let before = bytes_read(&mut idle);
        busy.send(burst.as_bytes());
        // The signal goes once the server has read every byte of the burst
        // (and none of its replies has been read).
        let mut want = before + burst.len() as u64;
        common::eventually("the server read the burst", || {
            want += "stats\r\n".len() as u64;
            bytes_read(&mut idle) == want
        });
        signal(&child, SIGTERM);
        // Every complete request is answered, the half one is not, and the
        // connection ends with a clean close. (The server gives a client
        // that does not read 1 s; this one reads at once.)
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut busy.stream, &mut got).expect("a clean close");
        assert!(
            got == expected.as_bytes(),
            "{runtime}: {} bytes of replies, expected {}",
            got.len(),
            expected.len()
        );
        let status = child.0.wait().unwrap();
        assert!(status.success(), "{runtime}: {status:?}");
        assert!(idle.is_closed());
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }
}

#[test]
fn the_shutdown_command_only_when_enabled() {
    // Disabled by default: an error, and the server keeps serving.
    let (mut child, addr) = spawn(&["--threads", "2", "--no-pin"]);
    let mut c = Raw::connect(addr);
    c.expect(
        "shutdown\r\nset a 0 0 1\r\n1\r\n",
        "ERROR: shutdown not enabled\r\nSTORED\r\n",
    );
    Raw::connect(addr).expect("get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n");
    signal(&child, SIGTERM);
    assert!(child.0.wait().unwrap().success());

    // Enabled: a form memcached does not take is refused; `shutdown` and
    // `shutdown graceful` close the connection with no reply, as
    // memcached does, and the server exits.
    let (mut child, addr) = spawn(&["--threads", "2", "--no-pin", "--enable-shutdown"]);
    let mut c = Raw::connect(addr);
    c.expect("shutdown now\r\n", "CLIENT_ERROR invalid shutdown mode\r\n");
    c.send(b"shutdown graceful\r\n");
    assert_eq!(c.read_to_close(), "");
    assert!(child.0.wait().unwrap().success());
}

/// The warnings among `log` lines.
fn warnings(log: &[String]) -> Vec<&String> {
    log.iter().filter(|line| line.contains("WARN")).collect()
}

#[test]
fn loopback_is_the_default_and_no_udp_port_is_opened() {
    let (_server, addr, log) = spawn_logging(&[]);
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_eq!(warnings(&log), Vec::<&String>::new());
    // A server with a UDP socket on the port would make this bind fail
    // (this socket asks for no SO_REUSEPORT).
    std::net::UdpSocket::bind(addr).expect("no UDP socket on the server's port");
    let mut c = Raw::connect(addr);
    let settings = c.stats("settings");
    assert!(settings.contains(&("udpport".to_string(), "0".to_string())));
}

#[test]
fn a_reachable_address_without_tls_or_auth_is_warned_of() {
    let (_server, addr, log) = spawn_logging(&["--listen", "0.0.0.0"]);
    assert_eq!(addr.ip().to_string(), "0.0.0.0");
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(
        warned[0].contains(&format!(
            "{addr} is not a loopback address and has neither TLS nor --auth-file"
        )),
        "{log:#?}"
    );
}

/// What the warning tests protect a listener with, as the flags take them:
/// a users file, a server certificate, its key and the CA of clients.
struct Secrets {
    users: String,
    cert: String,
    key: String,
    ca: String,
    _dir: Scratch,
    _pki: pki::Pki,
}

impl Secrets {
    fn new(name: &str) -> Secrets {
        let dir = Scratch::new(name);
        let pki = pki::Pki::new(name);
        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        Secrets {
            users: path(&dir.write("users", "alice:secret\n")),
            cert: path(&pki.server_cert),
            key: path(&pki.server_key),
            ca: path(&pki.ca),
            _dir: dir,
            _pki: pki,
        }
    }
}

#[test]
fn auth_or_verified_tls_silences_the_warning_and_unverified_tls_does_not() {
    let secrets = Secrets::new("cli-warning");
    let (cert, key, ca) = (&secrets.cert[..], &secrets.key[..], &secrets.ca[..]);
    let auth = ["--listen", "0.0.0.0", "--auth-file", &secrets.users];
    let (_server, _, log) = spawn_logging(&auth);
    assert_eq!(warnings(&log), Vec::<&String>::new());
    // TLS alone on the reachable address, client certificates required.
    let verified = ["--listen", "0.0.0.0", "--tls-cert", cert, "--tls-key", key];
    let (_server, _, log) = spawn_logging(&[&verified[..], &["--tls-ca", ca]].concat());
    assert_eq!(warnings(&log), Vec::<&String>::new());
    // Without --tls-ca anyone may connect: warned of, naming the TLS port.
    let (_server, addr, log) = spawn_logging(&verified);
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(
        warned[0].contains(&format!("TLS on {addr} is not on a loopback address")),
        "{log:#?}"
    );
}

/// The shard-aware port is another plaintext listener on the listen
/// address: verified TLS on a reachable `--listen` does not cover it, so
/// it is warned of on its own; `--auth-file` covers it.
#[test]
fn a_reachable_shard_aware_port_without_auth_is_warned_of() {
    let secrets = Secrets::new("cli-shard-aware-warning");
    let (cert, key, ca) = (&secrets.cert[..], &secrets.key[..], &secrets.ca[..]);
    // A port free a moment ago, for the shard-aware listener.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let tls = [
        "--listen",
        "0.0.0.0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-ca",
        ca,
        "--shard-aware-port",
        &port,
    ];
    let (server, _, log) = spawn_logging(&tls);
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log:#?}");
    assert!(
        warned[0].contains(&format!(
            "0.0.0.0:{port} is not a loopback address and has neither TLS nor --auth-file"
        )),
        "{log:#?}"
    );
    drop(server);
    let (_server, _, log) = spawn_logging(&[&tls[..], &["--auth-file", &secrets.users]].concat());
    assert_eq!(warnings(&log), Vec::<&String>::new());
}
