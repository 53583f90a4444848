//! Interoperability: programs nobody here wrote, driven against corecache.
//!
//! libmemcached's command-line tools, twemproxy (nutcracker) in front of two
//! instances, Python's pymemcache (plaintext and TLS), `openssl s_client`
//! over TLS, and the stats fields the Prometheus memcached_exporter reads. The programs come from Debian packages that
//! `tests/run.sh` installs; a missing one fails its test naming the package.
//! docs/interop.md says what is covered and what is not.

mod common;
#[path = "common/tls.rs"]
mod pki;

use clap::Parser;
use common::{KillOnDrop, Raw, Scratch, TestServer, eventually};
use corecache::config::{Cli, Config, RuntimeKind};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_corecache");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

per_runtime! {
    libmemcached_tools => super::libmemcached_tools_store_fetch_delete_flush;
    nutcracker_two_instances => super::nutcracker_spreads_keys_over_two_instances;
    pymemcache_client => super::pymemcache_checks_pass;
    memcached_exporter_fields => super::stats_have_what_memcached_exporter_parses;
    memccapable_ascii => super::memccapable_ascii_passes_every_test;
    memccapable_binary => super::memccapable_binary_passes_every_test;
    libmemcached_tools_binary => super::libmemcached_tools_speak_the_binary_protocol;
    pymemcache_tls => super::pymemcache_over_tls_with_client_certificates;
    pymemcache_auth => super::pymemcache_logs_in_as_memcached_documents;
    memcached_auth_replies => super::unauthenticated_clients_get_what_memcached_answers;
    openssl_s_client => super::openssl_s_client_is_served_and_a_rogue_certificate_refused;
    memcdump_100k => super::memcdump_lists_every_key_once;
}

// ---------------------------------------------------------------------------
// Harness: external programs, scratch directories, free ports.

/// `program` from PATH (or /usr/sbin, where Debian puts nutcracker and
/// which a non-root PATH often lacks), or a failure naming the Debian
/// package to install.
fn program(program: &str, package: &str) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file());
    let Some(found) = found else {
        panic!(
            "`{program}` is not installed: apt-get install {package} (bash tests/run.sh installs it)"
        );
    };
    let mut command = Command::new(found);
    command.stdin(Stdio::null());
    command
}

/// Runs a command to completion and returns its output.
fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

/// Runs a command that must succeed.
#[track_caller]
fn succeeds(command: &mut Command) -> Output {
    let out = run(command);
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        describe(&out)
    );
    out
}

/// Runs a command that must fail (exit non-zero).
#[track_caller]
fn fails(command: &mut Command) -> Output {
    let out = run(command);
    assert!(
        !out.status.success(),
        "{command:?} should have failed: {}",
        describe(&out)
    );
    out
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port free on 127.0.0.1 a moment ago, for programs that must be told
/// their port up front.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `get key` over our own client: the value, or None on a miss.
fn get(addr: SocketAddr, key: &str) -> Option<(u32, Vec<u8>)> {
    let mut raw = Raw::connect(addr);
    raw.send(format!("get {key}\r\n").as_bytes());
    let header = read_line(&mut raw);
    if header == "END" {
        return None;
    }
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(parts[..2], ["VALUE", key], "reply to get {key}: {header}");
    let flags = parts[2].parse().unwrap();
    let len: usize = parts[3].parse().unwrap();
    let mut value = raw.read_exact(len + 2);
    assert!(value.ends_with(b"\r\n"));
    value.truncate(len);
    assert_eq!(read_line(&mut raw), "END");
    Some((flags, value))
}

/// One reply line, without its CRLF.
fn read_line(raw: &mut Raw) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend(raw.read_exact(1));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

// ---------------------------------------------------------------------------
// 1. libmemcached-tools (memccp, memccat, ...), text protocol (their default).

fn memc(tool: &str, server: &TestServer) -> Command {
    let mut command = program(tool, "libmemcached-tools");
    command.arg(format!("--servers=127.0.0.1:{}", server.addr.port()));
    command
}

fn libmemcached_tools_store_fetch_delete_flush(runtime: RuntimeKind) {
    let server = TestServer::start(runtime);
    let dir = Scratch::new("memc");
    // Every byte value, CR LF and "END" included, and more than one packet.
    let blob: Vec<u8> = (0..20_000u32)
        .map(|i| (i * 7 % 256) as u8)
        .chain(*b"\r\nEND\r\n")
        .collect();
    let note = b"a short note\n".to_vec();
    std::fs::write(dir.path("blob.bin"), &blob).unwrap();
    std::fs::write(dir.path("note.txt"), &note).unwrap();

    // memccp stores each file under its base name, with the flags given.
    succeeds(
        memc("memccp", &server)
            .arg("--flags=42")
            .arg(dir.path("blob.bin"))
            .arg(dir.path("note.txt")),
    );
    assert_eq!(get(server.addr, "blob.bin"), Some((42, blob.clone())));
    assert_eq!(get(server.addr, "note.txt"), Some((42, note.clone())));

    // memccat --file writes the value byte for byte; to stdout it adds "\n".
    succeeds(
        memc("memccat", &server)
            .arg(format!("--file={}", dir.path("out.bin").display()))
            .arg("blob.bin"),
    );
    assert!(std::fs::read(dir.path("out.bin")).unwrap() == blob);
    let out = succeeds(memc("memccat", &server).arg("note.txt"));
    assert_eq!(out.stdout, [&note[..], b"\n"].concat());
    let out = succeeds(memc("memccat", &server).arg("--flags").arg("note.txt"));
    assert!(out.stdout.starts_with(b"42\n"), "{}", describe(&out));
    fails(memc("memccat", &server).arg("no-such-key"));

    // memcexist: exit status says whether the key is there.
    succeeds(memc("memcexist", &server).arg("blob.bin"));
    fails(memc("memcexist", &server).arg("no-such-key"));

    // memctouch: a new expiry on an existing key, refused for a missing one.
    succeeds(memc("memctouch", &server).arg("--expire=1").arg("note.txt"));
    fails(
        memc("memctouch", &server)
            .arg("--expire=1")
            .arg("no-such-key"),
    );
    server.advance(Duration::from_millis(999));
    assert_eq!(get(server.addr, "note.txt"), Some((42, note.clone())));
    server.advance(Duration::from_millis(1));
    assert_eq!(get(server.addr, "note.txt"), None, "memctouch --expire=1");

    // memcrm deletes; deleting again reports NOT_FOUND as a failure.
    succeeds(memc("memcrm", &server).arg("blob.bin"));
    assert_eq!(get(server.addr, "blob.bin"), None);
    fails(memc("memccat", &server).arg("blob.bin"));
    fails(memc("memcrm", &server).arg("blob.bin"));

    // memcflush empties the server.
    let mut copy = memc("memccp", &server);
    for i in 0..5 {
        let path = dir.path(&format!("file-{i}"));
        std::fs::write(&path, format!("content {i}")).unwrap();
        copy.arg(path);
    }
    succeeds(&mut copy);
    assert_eq!(server.stat_u64("", "curr_items"), 5);
    succeeds(&mut memc("memcflush", &server));
    for i in 0..5 {
        assert_eq!(get(server.addr, &format!("file-{i}")), None);
        fails(memc("memcexist", &server).arg(format!("file-{i}")));
    }
    assert_eq!(server.wait_for_stat("curr_items", 0), 0);
}

/// memcdump (libmemcached 1.1.4) lists keys with `stats cachedump <class> 0`
/// for every class from 0 to 63, as it does against memcached. 100,000
/// keys in two classes: memcached caps each class's listing at 2 MiB, and
/// 50,000 of these lines fit in it.
fn memcdump_lists_every_key_once(runtime: RuntimeKind) {
    let server = TestServer::start(runtime);
    let mut raw = server.connect();
    let keys: Vec<String> = (0..100_000).map(|i| format!("d:{i:06}")).collect();
    for (chunk, len) in keys.chunks(50_000).zip([10, 300]) {
        let value = "v".repeat(len);
        for batch in chunk.chunks(1000) {
            let mut request = String::new();
            for key in batch {
                request += &format!("set {key} 0 0 {len} noreply\r\n{value}\r\n");
            }
            raw.send(request.as_bytes());
        }
    }
    raw.expect("mn\r\n", "MN\r\n");
    assert_eq!(server.stat_u64("", "curr_items"), 100_000);
    let out = succeeds(&mut memc("memcdump", &server));
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = text.lines().collect();
    let unique: std::collections::HashSet<&str> = listed.iter().copied().collect();
    assert_eq!((listed.len(), unique.len()), (100_000, 100_000));
    assert!(keys.iter().all(|key| unique.contains(key.as_str())));
}

/// memcstat and memcping first ask the server's `version`, and libmemcached
/// parses it as memcached's "MAJOR.MINOR.MICRO" with MAJOR > 0: a reply such
/// as "VERSION corecache-0.1.0" stops both tools at "strtol() failed to
/// parse major version". corecache answers "1.6.18-corecache-<version>".
#[test]
fn libmemcached_stat_and_ping_need_a_numeric_version() {
    for runtime in [RuntimeKind::ThreadPerCore, RuntimeKind::WorkStealing] {
        let server = TestServer::start(runtime);
        let mut raw = server.connect();
        raw.expect("set one 0 0 1\r\n1\r\n", "STORED\r\n");
        raw.expect("set two 0 0 1\r\n2\r\n", "STORED\r\n");
        succeeds(&mut memc("memcping", &server));
        let out = succeeds(&mut memc("memcstat", &server));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines().any(|line| line.trim() == "curr_items: 2"),
            "{text}"
        );
    }
}

/// memccapable, libmemcached's protocol conformance checker, run against
/// one server with `-a` (text) or `-b` (binary): every one of its 27 tests
/// of that protocol must pass.
fn memccapable(runtime: RuntimeKind, protocol: &str) {
    let server = TestServer::start(runtime);
    memccapable_passes(server.addr, protocol);
}

/// memccapable against `addr` with `protocol` (`-a` or `-b`): all 27 pass.
fn memccapable_passes(addr: SocketAddr, protocol: &str) {
    let out = succeeds(
        program("memccapable", "libmemcached-tools")
            .args(["-h", "127.0.0.1", "-p"])
            .arg(addr.port().to_string())
            .args(["-t", "10", protocol]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let passed = text.lines().filter(|l| l.ends_with("[pass]")).count();
    let failed: Vec<&str> = text.lines().filter(|l| l.contains("[FAIL]")).collect();
    assert_eq!((passed, failed.len()), (27, 0), "{}", describe(&out));
    assert_eq!(text.lines().last(), Some("All tests passed"), "{text}");
}

/// The same tools with `--binary` (memcping and memcdump have no such
/// option): every request and reply goes through the binary protocol.
fn libmemcached_tools_speak_the_binary_protocol(runtime: RuntimeKind) {
    let server = TestServer::start(runtime);
    let dir = Scratch::new("memc-binary");
    let blob: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 256) as u8).collect();
    std::fs::write(dir.path("blob.bin"), &blob).unwrap();
    let binary = |tool: &str| {
        let mut command = memc(tool, &server);
        command.arg("--binary");
        command
    };
    succeeds(binary("memccp").arg("--flags=42").arg(dir.path("blob.bin")));
    assert_eq!(get(server.addr, "blob.bin"), Some((42, blob.clone())));
    let out_file = dir.path("out.bin");
    succeeds(
        binary("memccat")
            .arg(format!("--file={}", out_file.display()))
            .arg("blob.bin"),
    );
    assert!(std::fs::read(&out_file).unwrap() == blob);
    let out = succeeds(binary("memccat").arg("--flags").arg("blob.bin"));
    assert!(out.stdout.starts_with(b"42\n"), "{}", describe(&out));
    fails(binary("memccat").arg("no-such-key"));
    succeeds(binary("memcexist").arg("blob.bin"));
    fails(binary("memcexist").arg("no-such-key"));
    succeeds(binary("memctouch").arg("--expire=100").arg("blob.bin"));
    fails(binary("memctouch").arg("--expire=100").arg("no-such-key"));
    let out = succeeds(&mut binary("memcstat"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.trim() == "curr_items: 1"), "{text}");
    succeeds(binary("memcrm").arg("blob.bin"));
    fails(binary("memcrm").arg("blob.bin"));
    assert_eq!(get(server.addr, "blob.bin"), None);
    succeeds(binary("memccp").arg(dir.path("blob.bin")));
    succeeds(&mut binary("memcflush"));
    assert_eq!(get(server.addr, "blob.bin"), None);
}

fn memccapable_ascii_passes_every_test(runtime: RuntimeKind) {
    memccapable(runtime, "-a");
}

fn memccapable_binary_passes_every_test(runtime: RuntimeKind) {
    memccapable(runtime, "-b");
}

// ---------------------------------------------------------------------------
// 2. twemproxy (nutcracker) in front of two instances.

/// nutcracker, started from the shipped config with only its addresses
/// replaced: its own, and `servers` as its two servers; running once it
/// accepts. Returns it (killed on drop), its address and its stats port.
fn nutcracker_in_front_of(
    servers: [SocketAddr; 2],
    dir: &Scratch,
) -> (KillOnDrop, SocketAddr, u16) {
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let stats_port = free_port();

    // The shipped config, with only its three addresses replaced.
    let shipped = std::fs::read_to_string(format!("{ROOT}/configs/nutcracker.yml")).unwrap();
    let mut config = shipped.clone();
    for (from, to) in [
        (
            "listen: 127.0.0.1:22121".to_string(),
            format!("listen: {proxy}"),
        ),
        ("- 127.0.0.1:11211:".into(), format!("- {}:", servers[0])),
        ("- 127.0.0.1:11212:".into(), format!("- {}:", servers[1])),
    ] {
        assert_eq!(
            shipped.matches(&from).count(),
            1,
            "{from} in nutcracker.yml"
        );
        config = config.replace(&from, &to);
    }
    let config_path = dir.path("nutcracker.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path("nutcracker.log");
    succeeds(
        program("nutcracker", "nutcracker")
            .arg("-t")
            .arg("-c")
            .arg(&config_path),
    );

    let child = program("nutcracker", "nutcracker")
        .arg("-c")
        .arg(&config_path)
        .args(["-a", "127.0.0.1", "-s", &stats_port.to_string()])
        .arg("-p")
        .arg(dir.path("nutcracker.pid"))
        .arg("-o")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nutcracker starts");
    let mut nutcracker = KillOnDrop(child);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("nutcracker accepts connections", || {
        if let Ok(Some(status)) = nutcracker.0.try_wait() {
            panic!("nutcracker exited {status}:\n{}", log_text());
        }
        TcpStream::connect(proxy).is_ok()
    });
    (nutcracker, proxy, stats_port)
}

fn nutcracker_spreads_keys_over_two_instances(runtime: RuntimeKind) {
    let servers = [TestServer::start(runtime), TestServer::start(runtime)];
    let dir = Scratch::new("nutcracker");
    // Declared after the servers, so dropped (killed) before them.
    let (nutcracker, proxy, stats_port) =
        nutcracker_in_front_of([servers[0].addr, servers[1].addr], &dir);

    // Stores through the proxy land on one instance or the other.
    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let value = |key: &str| format!("value of {key}");
    let mut client = Raw::connect(proxy);
    for key in &keys {
        let v = value(key);
        client.expect(
            &format!("set {key} 0 0 {}\r\n{v}\r\n", v.len()),
            "STORED\r\n",
        );
    }
    let items: Vec<u64> = servers
        .iter()
        .map(|s| s.stat_u64("", "curr_items"))
        .collect();
    assert!(
        items.iter().all(|&n| n > 0),
        "one instance got nothing: {items:?}"
    );
    assert_eq!(items.iter().sum::<u64>(), keys.len() as u64, "{items:?}");
    for key in &keys {
        let holders = servers
            .iter()
            .filter(|s| get(s.addr, key).is_some())
            .count();
        assert_eq!(holders, 1, "{key} is on {holders} instances");
    }

    // Every key reads back through the proxy.
    for key in &keys {
        let v = value(key);
        client.expect(
            &format!("get {key}\r\n"),
            &format!("VALUE {key} 0 {}\r\n{v}\r\nEND\r\n", v.len()),
        );
    }

    // Multi-gets spanning both instances, with misses mixed in. Up to a
    // request line of about 2 KB the hits come back in the order asked.
    // Past that, nutcracker 0.5.0 may answer in another order: the same
    // happens with memcached 1.6.18 behind it (docs/interop.md), and clients
    // match VALUEs by key; there the hits must still be exactly right.
    let multi_get = |client: &mut Raw, asked: &[String]| -> (String, String) {
        client.send(format!("get {}\r\n", asked.join(" ")).as_bytes());
        let reply = String::from_utf8(client.read_until(b"END\r\n")).unwrap();
        let mut expected = String::new();
        for key in asked.iter().filter(|k| !k.starts_with("missing:")) {
            let v = value(key);
            expected += &format!("VALUE {key} 0 {}\r\n{v}\r\n", v.len());
        }
        (reply, expected + "END\r\n")
    };
    let asked = |count: usize| -> Vec<String> {
        keys.iter()
            .rev()
            .step_by(3)
            .take(count)
            .flat_map(|key| [key.clone(), format!("missing:{key}")])
            .collect()
    };
    let small = asked(50);
    assert!(small.join(" ").len() < 1500);
    let (reply, expected) = multi_get(&mut client, &small);
    assert_eq!(reply, expected, "a multi-get of {} keys", small.len());
    let large = asked(100);
    let (reply, expected) = multi_get(&mut client, &large);
    assert!(reply.ends_with("END\r\n"));
    assert_eq!(
        value_blocks(&reply),
        value_blocks(&expected),
        "a multi-get of {} keys",
        large.len()
    );

    // nutcracker's own stats name the pool and both servers.
    let mut stats = String::new();
    TcpStream::connect(("127.0.0.1", stats_port))
        .and_then(|mut s| s.read_to_string(&mut stats))
        .expect("nutcracker stats");
    for name in ["\"corecache\"", "\"corecache-a\"", "\"corecache-b\""] {
        assert!(stats.contains(name), "{name} not in {stats}");
    }
    drop(nutcracker);
}

/// A multi-get reply's lines in pairs (a `VALUE` line and its data; `END`
/// alone), sorted: the reply as a set of hits, whatever their order.
fn value_blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = text
        .split_inclusive("\r\n")
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| pair.concat())
        .collect();
    blocks.sort();
    blocks
}

// ---------------------------------------------------------------------------
// 3. pymemcache, a Python client.

/// Debian's python3 (where python3-pymemcache installs), or $CORECACHE_PYTHON.
fn python() -> Command {
    let python = std::env::var("CORECACHE_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    assert!(
        Path::new(&python).is_file(),
        "{python} not found: apt-get install python3 python3-pymemcache \
         (bash tests/run.sh installs them), or point CORECACHE_PYTHON at a python3"
    );
    let mut command = Command::new(python);
    command.stdin(Stdio::null());
    command
}

fn pymemcache_checks_pass(runtime: RuntimeKind) {
    // Two servers: the second is for pymemcache's HashClient check.
    let servers = [TestServer::start(runtime), TestServer::start(runtime)];
    let mut child = python()
        .arg(format!("{ROOT}/tests/interop/pymemcache_check.py"))
        .args(servers.iter().map(|s| s.addr.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // The script asks for time to pass ("advance SECONDS") and waits for
    // the answer: the servers' clocks are held, so it never sleeps.
    let mut answer = child.stdin.take().unwrap();
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("the script's output");
        if let Some(secs) = line.strip_prefix("advance ") {
            let secs: u64 = secs.parse().expect("advance SECONDS");
            servers[0].advance(Duration::from_secs(secs));
            writeln!(answer, "advanced").expect("the script reads its answer");
        } else {
            stdout += &line;
            stdout.push('\n');
        }
    }
    let status = child.wait().unwrap();
    let out = Output {
        status,
        stdout: stdout.clone().into_bytes(),
        stderr: stderr.join().unwrap().into_bytes(),
    };
    assert_ne!(
        out.status.code(),
        Some(3),
        "pymemcache is not importable: apt-get install python3-pymemcache \
         (bash tests/run.sh installs it): {}",
        describe(&out)
    );
    assert!(
        out.status.success(),
        "pymemcache checks: {}",
        describe(&out)
    );
    assert!(stdout.contains("11 ok, 0 failed"), "{stdout}");
}

/// A server requiring client certificates from `pki`'s CA on a TLS
/// listener beside the plaintext one.
fn tls_server(runtime: RuntimeKind, pki: &pki::Pki) -> TestServer {
    TestServer::with(runtime, |config| {
        config.tls = Some(pki.server(true, Some("127.0.0.1:0".parse().unwrap())));
    })
}

/// Runs `tests/interop/<script>` with `args`; it must import pymemcache
/// and pass every check. Returns what it printed.
fn pymemcache_script(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = run(python()
        .arg(format!("{ROOT}/tests/interop/{script}"))
        .args(args));
    assert_ne!(
        out.status.code(),
        Some(3),
        "pymemcache is not importable: apt-get install python3-pymemcache: {}",
        describe(&out)
    );
    assert!(out.status.success(), "{script}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pymemcache_over_tls_with_client_certificates(runtime: RuntimeKind) {
    let pki = pki::Pki::new("pymemcache");
    let server = tls_server(runtime, &pki);
    let addr = server.tls_addr.unwrap().to_string();
    let files = [
        &pki.ca,
        &pki.client_cert,
        &pki.client_key,
        &pki.rogue_cert,
        &pki.rogue_key,
    ];
    let mut args = vec![addr.as_ref()];
    args.extend(files.iter().map(|path| path.as_os_str()));
    let stdout = pymemcache_script("pymemcache_tls.py", &args);
    assert!(stdout.contains("3 ok, 0 failed"), "{stdout}");
    // Each refused client is one failed handshake on the server.
    assert_eq!(server.wait_for_stat("ssl_handshake_errors", 2), 2);
    // What the trusted client stored, a plaintext client reads.
    assert_eq!(get(server.addr, "tls:7"), Some((0, b"7".repeat(100))));
}

/// `openssl s_client` sending `input` with the client certificate
/// `cert`/`key`; its output and status. `timeout` bounds it should the
/// server never close.
fn s_client(server: &TestServer, pki: &pki::Pki, cert: &Path, key: &Path, input: &str) -> Output {
    program("openssl", "openssl");
    let mut child = program("timeout", "coreutils")
        .args([
            "20",
            "openssl",
            "s_client",
            "-quiet",
            "-verify_return_error",
        ])
        .arg("-connect")
        .arg(server.tls_addr.unwrap().to_string())
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&pki.ca)
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    // stdin stays open (s_client would otherwise close before the replies
    // come): the server's close after `quit`, or its refusal, ends it.
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input.as_bytes());
    let out = child.wait_with_output().expect("openssl finishes");
    drop(stdin);
    out
}

fn openssl_s_client_is_served_and_a_rogue_certificate_refused(runtime: RuntimeKind) {
    let pki = pki::Pki::new("s_client");
    let server = tls_server(runtime, &pki);
    let session = "set greeting 5 0 5\r\nhello\r\nget greeting\r\nquit\r\n";
    let out = s_client(&server, &pki, &pki.client_cert, &pki.client_key, session);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "STORED\r\nVALUE greeting 5 5\r\nhello\r\nEND\r\n",
        "{}",
        describe(&out)
    );
    let rogue = "set intruder 0 0 1\r\nx\r\nquit\r\n";
    let out = s_client(&server, &pki, &pki.rogue_cert, &pki.rogue_key, rogue);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alert"),
        "no TLS alert reported: {}",
        describe(&out)
    );
    assert_eq!(server.wait_for_stat("ssl_handshake_errors", 1), 1);
    assert_eq!(get(server.addr, "intruder"), None);
}

/// A users file in `dir` for `--auth-file` and memcached's `-Y`.
fn users_file(dir: &Scratch) -> PathBuf {
    dir.write("users", "alice:secret\n")
}

fn pymemcache_logs_in_as_memcached_documents(runtime: RuntimeKind) {
    let dir = Scratch::new("pymemcache-auth");
    let users = users_file(&dir);
    let server = TestServer::with(runtime, |config| config.auth_file = Some(users.clone()));
    let addr = server.addr.to_string();
    let stdout = pymemcache_script("pymemcache_auth.py", &[addr.as_ref()]);
    assert!(stdout.contains("3 ok, 0 failed"), "{stdout}");
}

/// memcached 1.6.18 started with `args` on a free port, killed when dropped.
fn memcached(args: &[&std::ffi::OsStr]) -> (KillOnDrop, SocketAddr) {
    let port = free_port();
    let child = program("memcached", "memcached")
        .args(["-U", "0", "-l", "127.0.0.1", "-u", "root", "-t", "1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("memcached starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = KillOnDrop(child);
    eventually("memcached listens", || TcpStream::connect(addr).is_ok());
    (child, addr)
}

fn unauthenticated_clients_get_what_memcached_answers(runtime: RuntimeKind) {
    let dir = Scratch::new("auth-replies");
    let users = users_file(&dir);
    let (_memcached, reference) = memcached(&["-Y".as_ref(), users.as_os_str()]);
    let server = TestServer::with(runtime, |config| config.auth_file = Some(users.clone()));
    let binary_get = b"\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\0\0\0\0\0\0\0\0\0\0\0\0k";
    // Sessions of requests, each sent alone and answered by one line
    // (memcached answers only the last of several sent together).
    let sessions: &[&[&[u8]]] = &[
        &[
            b"get a\r\n",
            b"version\r\n",
            b"stats\r\n",
            b"quit\r\n",
            b"\r\n",
            b"mg a v\r\n",
            b"SET a 0 0 12\r\n",
            b"set a 0 0\r\n",
            b"set a 0 0 -1\r\n",
            b"set a 0 0 12abc\r\n",
            b"append a 0 0 1\r\n",
        ],
        &[
            b"set a 0 0 12\r\nalice secreX\r\n",
            b"get a\r\n",
            b"set a 0 0 5\r\nalice\r\n",
            b"set a 0 0 0\r\n\r\n",
            b"set k 0 0 1\r\nx\r\n",
            b"set a 0 0 12\r\nalice secretXX",
            b"set a 0 0 12\r\nalice secret\n\n",
            b"set a 0 0 13\r\nalice secret\r\r\n",
            b"set a 0 0 +12\r\nalice secret\r\n",
            b"get a k\r\n",
        ],
        &[b"set a 0 0 14\r\nalice  secret \r\n", b"get a\r\n"],
        // memcached reads the line and the data as C strings.
        &[
            b"set a 0 0 12\0junk\r\nalice\0secret\r\n",
            b"set a 0 0 14\0junk\r\nalice secret\0x\r\n",
            b"get a\r\n",
        ],
        &[
            b"set a 0 0 18 noreply\r\nalice secret extra\r\n",
            b"get a\r\n",
        ],
        &[
            b"set a 0 0 12\nalice secret\r\n",
            &[binary_get, &b"\r\n"[..]].concat(),
            b"get a\r\n",
        ],
    ];
    for session in sessions {
        let (mut theirs, mut ours) = (Raw::connect(reference), server.connect());
        for request in *session {
            theirs.send(request);
            ours.send(request);
            let (want, got) = (theirs.read_until(b"\r\n"), ours.read_until(b"\r\n"));
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "reply to {:?}",
                String::from_utf8_lossy(request)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. What Prometheus' memcached_exporter (v0.16.0, through its client
// github.com/grobie/gomemcache) reads from `stats`, `stats settings`,
// `stats slabs` and `stats items`. Written from reading its source; nothing
// copied. docs/interop.md has the full list and what each field becomes.

/// Fields whose absence or wrong type makes the exporter report
/// `memcached_up 0`: it derives `set` commands as cmd_set minus the CAS
/// counters, and fails the scrape when any of them is missing.
const EXPORTER_REQUIRED: &[&str] = &["cmd_set", "cas_misses", "cas_hits", "cas_badval"];
const EXPORTER_REQUIRED_PER_SLAB: &[&str] = &["cmd_set", "cas_hits", "cas_badval"];

/// `stats` fields it turns into metrics (a missing one is a missing metric;
/// one that is not a number fails the scrape). corecache has all of these.
const EXPORTER_STATS: &[&str] = &[
    "uptime",
    "time",
    "get_hits",
    "get_misses",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "cmd_flush",
    "cmd_set",
    "bytes",
    "limit_maxbytes",
    "curr_items",
    "total_items",
    "bytes_read",
    "bytes_written",
    "curr_connections",
    "total_connections",
    "rejected_connections",
    "evictions",
    "reclaimed",
    "total_malloced",
];

/// `stats` fields it reads if present: numbers where corecache reports
/// them (the listener's, the store refusals, `lru_crawler_starts`); the
/// others are memcached's segmented-LRU and crawler internals, absent
/// here, so their metrics are simply absent.
const EXPORTER_STATS_ABSENT: &[&str] = &[
    "accepting_conns",
    "conn_yields",
    "listen_disabled_num",
    "store_too_large",
    "store_no_memory",
    "lru_crawler_starts",
    "direct_reclaims",
    "crawler_items_checked",
    "crawler_reclaimed",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
];

/// Per-class `stats items` fields it reads.
const EXPORTER_ITEMS: &[&str] = &[
    "number",
    "age",
    "evicted",
    "evicted_nonzero",
    "evicted_unfetched",
    "expired_unfetched",
    "outofmemory",
    "reclaimed",
];

/// Per-class `stats slabs` fields it reads.
const EXPORTER_SLABS: &[&str] = &[
    "chunk_size",
    "chunks_per_page",
    "total_pages",
    "total_chunks",
    "used_chunks",
    "free_chunks",
    "free_chunks_end",
    "mem_requested",
    "get_hits",
    "delete_hits",
    "incr_hits",
    "decr_hits",
    "touch_hits",
    "cas_hits",
    "cas_badval",
    "cmd_set",
];

/// The STAT lines of one `stats <args>` reply, exactly as sent.
fn stat_lines(addr: SocketAddr, args: &str) -> Vec<String> {
    let mut raw = Raw::connect(addr);
    raw.send(format!("stats{}{args}\r\n", if args.is_empty() { "" } else { " " }).as_bytes());
    let reply = String::from_utf8(raw.read_until(b"END\r\n")).unwrap();
    let lines: Vec<String> = reply
        .strip_suffix("END\r\n")
        .unwrap()
        .split_terminator("\r\n")
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "`stats {args}` is empty");
    lines
}

/// Global, per-slab and per-item-class maps, split the way gomemcache does:
/// `STAT name value` with exactly three words (others are dropped), and the
/// name's colons deciding the map: `name`, `N:name`, `items:N:name`, where
/// N must be an integer or the whole scrape fails.
type Stats = HashMap<String, String>;
type PerClass = HashMap<i64, Stats>;

fn exporter_view(addr: SocketAddr) -> (Stats, PerClass, PerClass) {
    let (mut global, mut slabs, mut items) = (Stats::new(), PerClass::new(), PerClass::new());
    for args in ["", "slabs", "items"] {
        for line in stat_lines(addr, args) {
            let words: Vec<&str> = line.split(' ').collect();
            assert!(
                words.len() == 3 && words[0] == "STAT",
                "`stats {args}` line {line:?} is not `STAT name value`: the exporter drops it"
            );
            let (name, value) = (words[1], words[2].to_string());
            let class = |n: &str| -> i64 {
                n.parse()
                    .unwrap_or_else(|_| panic!("{line:?}: {n:?} is not a class number"))
            };
            match name.split(':').collect::<Vec<_>>()[..] {
                [field] => {
                    global.insert(field.into(), value);
                }
                [n, field] => {
                    slabs
                        .entry(class(n))
                        .or_default()
                        .insert(field.into(), value);
                }
                [_, n, field] => {
                    items
                        .entry(class(n))
                        .or_default()
                        .insert(field.into(), value);
                }
                _ => {}
            }
        }
    }
    (global, slabs, items)
}

/// Go's strconv.ParseFloat accepts what Rust's f64 parser accepts for the
/// plain decimal integers and fractions a server sends.
#[track_caller]
fn assert_number(map: &Stats, field: &str, context: &str) {
    let value = map
        .get(field)
        .unwrap_or_else(|| panic!("{context}: no {field} (memcached_exporter reads it)"));
    assert!(
        value.parse::<f64>().is_ok(),
        "{context}: {field} = {value:?} is not a number"
    );
}

fn stats_have_what_memcached_exporter_parses(runtime: RuntimeKind) {
    let server = TestServer::start(runtime);
    let mut raw = server.connect();
    // Items in two slab classes, and every counter family touched.
    raw.expect("set small 0 0 2\r\n10\r\n", "STORED\r\n");
    let big = "x".repeat(5000);
    raw.expect(&format!("set big 0 0 5000\r\n{big}\r\n"), "STORED\r\n");
    raw.expect("incr small 1\r\n", "11\r\n");
    raw.expect("decr small 1\r\n", "10\r\n");
    raw.expect("touch big 100\r\n", "TOUCHED\r\n");
    raw.expect("cas small 0 0 1 1\r\n1\r\n", "EXISTS\r\n");
    raw.expect("delete nothing\r\n", "NOT_FOUND\r\n");
    raw.expect("get small\r\n", "VALUE small 0 2\r\n10\r\nEND\r\n");

    let (global, slabs, items) = exporter_view(server.addr);
    for field in EXPORTER_REQUIRED {
        assert_number(&global, field, "stats (else memcached_up 0)");
    }
    for field in EXPORTER_STATS {
        assert_number(&global, field, "stats");
    }
    for field in EXPORTER_STATS_ABSENT {
        if global.contains_key(*field) {
            assert_number(&global, field, "stats");
        }
    }
    assert!(global.contains_key("version"), "stats: no version");
    assert_eq!(global["curr_items"], "2");
    // rusage_* are parsed as a timeval: SECONDS.MICROSECONDS, one dot.
    for field in ["rusage_user", "rusage_system"] {
        let value = &global[field];
        let parts: Vec<&str> = value.split('.').collect();
        assert!(
            parts.len() == 2 && parts.iter().all(|p| p.parse::<u64>().is_ok()),
            "{field} = {value:?} is not SECONDS.MICROSECONDS"
        );
    }

    assert_eq!(slabs.len(), 2, "two slab classes in use: {slabs:?}");
    for (class, fields) in &slabs {
        for field in EXPORTER_REQUIRED_PER_SLAB.iter().chain(EXPORTER_SLABS) {
            assert_number(fields, field, &format!("stats slabs, class {class}"));
        }
    }
    assert_eq!(
        slabs.keys().collect::<std::collections::BTreeSet<_>>(),
        items.keys().collect(),
        "stats slabs and stats items list the same classes"
    );
    for (class, fields) in &items {
        for field in EXPORTER_ITEMS {
            assert_number(fields, field, &format!("stats items, class {class}"));
        }
    }
    let numbers: u64 = items
        .values()
        .map(|f| f["number"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(numbers, 2, "items:N:number adds up to curr_items");

    // `stats settings`: every line `STAT name value...`, maxconns a number,
    // and the LRU-crawler block only if it says lru_crawler yes.
    let mut settings = Stats::new();
    for line in stat_lines(server.addr, "settings") {
        let mut words = line.splitn(3, ' ');
        let (stat, name, value) = (words.next(), words.next(), words.next());
        assert!(
            stat == Some("STAT") && name.is_some() && value.is_some(),
            "`stats settings` line {line:?}: gomemcache fails the whole scrape on it"
        );
        settings.insert(name.unwrap().into(), value.unwrap().trim().into());
    }
    assert_number(&settings, "maxconns", "stats settings");
    if settings.get("lru_crawler").map(String::as_str) == Some("yes") {
        for field in [
            "lru_crawler_sleep",
            "lru_crawler_tocrawl",
            "hot_lru_pct",
            "warm_lru_pct",
            "hot_max_factor",
            "warm_max_factor",
        ] {
            assert_number(&settings, field, "stats settings (lru_crawler yes)");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. configs/many-core.toml

const MANY_CORE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/many-core.toml");

/// On the 32-CPU host it is written for, the file is a valid configuration
/// and means what its comments say.
#[test]
fn many_core_config_is_valid_on_a_32_cpu_host() {
    let cli = Cli::parse_from(["corecache", "--config", MANY_CORE]);
    let all_32: Vec<usize> = (0..32).collect();
    let config = Config::from_cli(&cli, &all_32).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.threads, 31);
    assert_eq!(
        config.cpus,
        (1..32).collect::<Vec<_>>(),
        "CPU 0 left for IRQs"
    );
    assert!(config.pin);
    assert_eq!(config.runtime, RuntimeKind::ThreadPerCore);
    assert_eq!(config.shards % config.threads, 0, "shards spread evenly");
    assert!(config.shards > config.threads);
    assert_eq!(config.memory, 96 << 30);
    assert_eq!(config.max_connections, 60_000);
    assert_eq!(config.listen.port(), 11211);
}

/// Here (fewer CPUs) the binary reads and validates the file, then refuses
/// the CPU list with status 2 and one line naming the setting. On a host
/// that has CPUs 1-31 it starts instead, which shows the same.
#[test]
fn many_core_config_parses_and_names_cpus_when_they_are_missing() {
    let mut child = Command::new(BIN)
        .args([
            "--config",
            MANY_CORE,
            "--listen",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("listening on") {
            // All 31 CPUs exist here: it parsed, validated and started.
            assert!(line.contains("31 threads"), "{line}");
            return;
        }
        lines.push(line);
    }
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(
        lines[0].starts_with("corecache: cpus (config file): CPU ")
            && lines[0].contains("is not one this process may use"),
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------
// Per-core ports (--port-per-core): each thread's port listed as a server of
// its own, the way these clients list N memcached servers. Every key goes
// straight to the thread that keeps it: nothing is forwarded.

mod per_core_ports {
    use super::*;

    /// The server's per-core ports as `--servers` takes them.
    fn server_list(server: &TestServer) -> String {
        let ports: Vec<String> = server.per_core.iter().map(|a| a.to_string()).collect();
        ports.join(",")
    }

    /// How many of `keys` each per-core port holds, asserting that each
    /// key is held by exactly one port.
    fn holders(server: &TestServer, keys: &[String]) -> Vec<usize> {
        let mut counts = vec![0; server.per_core.len()];
        for key in keys {
            let on: Vec<usize> = (0..server.per_core.len())
                .filter(|&i| get(server.per_core[i], key).is_some())
                .collect();
            assert_eq!(on.len(), 1, "{key} is on ports {on:?}");
            counts[on[0]] += 1;
        }
        counts
    }

    #[test]
    fn pymemcache_hash_client_over_the_ports() {
        let server = TestServer::per_core_with(3, |_| {});
        let ports: Vec<String> = server.per_core.iter().map(|a| a.to_string()).collect();
        let args: Vec<&std::ffi::OsStr> = ports.iter().map(|p| p.as_ref()).collect();
        let out = pymemcache_script("pymemcache_per_core.py", &args);
        assert!(out.starts_with("400 keys on ports ["), "{out}");
        server.assert_forwarded_exactly(0);
        // Each port's thread served its share.
        for thread in 0..3 {
            let cmds = server.stat_u64("threads", &format!("thread:{thread}:cmd_total"));
            assert!(cmds > 0, "thread {thread} served nothing");
        }
    }

    #[test]
    fn nutcracker_with_the_ports_as_its_servers() {
        let server = TestServer::per_core_with(2, |_| {});
        let dir = Scratch::new("nutcracker-per-core");
        let (nutcracker, proxy, _) =
            nutcracker_in_front_of([server.per_core[0], server.per_core[1]], &dir);
        let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
        let value = |key: &str| format!("value of {key}");
        let mut client = Raw::connect(proxy);
        for key in &keys {
            let v = value(key);
            client.expect(
                &format!("set {key} 0 0 {}\r\n{v}\r\n", v.len()),
                "STORED\r\n",
            );
        }
        for key in &keys {
            let v = value(key);
            client.expect(
                &format!("get {key}\r\n"),
                &format!("VALUE {key} 0 {}\r\n{v}\r\nEND\r\n", v.len()),
            );
        }
        // A multi-get nutcracker splits over both ports, with misses.
        let asked: Vec<String> = keys
            .iter()
            .step_by(10)
            .flat_map(|k| [k.clone(), format!("missing:{k}")])
            .collect();
        client.send(format!("get {}\r\n", asked.join(" ")).as_bytes());
        let reply = String::from_utf8(client.read_until(b"END\r\n")).unwrap();
        let mut expected = String::new();
        for key in keys.iter().step_by(10) {
            let v = value(key);
            expected += &format!("VALUE {key} 0 {}\r\n{v}\r\n", v.len());
        }
        // nutcracker 0.5.0 may put one server's hits before the other's
        // (see the test above): clients match VALUEs by key.
        assert!(reply.ends_with("END\r\n"));
        assert_eq!(value_blocks(&reply), value_blocks(&(expected + "END\r\n")));
        let counts = holders(&server, &keys);
        assert!(
            counts.iter().all(|&n| n > 0),
            "a port got nothing: {counts:?}"
        );
        assert_eq!(server.stat_u64("", "curr_items"), keys.len() as u64);
        server.assert_forwarded_exactly(0);
        drop(nutcracker);
    }

    #[test]
    fn libmemcached_tools_with_the_ports_as_servers() {
        let server = TestServer::per_core_with(2, |_| {});
        let dir = Scratch::new("memc-per-core");
        let servers = format!("--servers={}", server_list(&server));
        let names: Vec<String> = (0..40).map(|i| format!("file-{i}")).collect();
        let content = |i: usize| format!("content of file {i}\n").repeat(i + 1);
        let mut copy = program("memccp", "libmemcached-tools");
        copy.arg(&servers).arg("--flags=7");
        for (i, name) in names.iter().enumerate() {
            let path = dir.path(name);
            std::fs::write(&path, content(i)).unwrap();
            copy.arg(path);
        }
        succeeds(&mut copy);
        for (i, name) in names.iter().enumerate() {
            let out = succeeds(
                program("memccat", "libmemcached-tools")
                    .arg(&servers)
                    .arg(name),
            );
            assert_eq!(
                out.stdout,
                format!("{}\n", content(i)).into_bytes(),
                "{name}"
            );
        }
        let counts = holders(&server, &names);
        assert!(
            counts.iter().all(|&n| n > 0),
            "a port got nothing: {counts:?}"
        );
        // The binary protocol, over the same list.
        let binary = |tool: &str| {
            let mut command = program(tool, "libmemcached-tools");
            command.arg(&servers).arg("--binary");
            command
        };
        succeeds(binary("memcrm").arg(&names[0]));
        fails(binary("memccat").arg(&names[0]));
        let out = succeeds(binary("memccat").arg(&names[1]));
        assert_eq!(out.stdout, format!("{}\n", content(1)).into_bytes());
        server.assert_forwarded_exactly(0);
        // memcflush flushes every server it is given; each port flushes
        // the whole process (twice here, harmlessly).
        succeeds(program("memcflush", "libmemcached-tools").arg(&servers));
        assert_eq!(server.wait_for_stat("curr_items", 0), 0);
    }

    /// memccapable's 27 checks, text and binary, through one per-core port:
    /// every key it sends is that thread's.
    #[test]
    fn memccapable_passes_on_a_per_core_port() {
        let server = TestServer::per_core_with(2, |_| {});
        memccapable_passes(server.per_core[1], "-a");
        memccapable_passes(server.per_core[1], "-b");
        server.assert_forwarded_exactly(0);
    }
}
