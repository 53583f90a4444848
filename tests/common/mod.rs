//! Shared test harness: a real server on an ephemeral port, in either
//! runtime, and a raw-bytes client for it.
//!
//! The server runs on a held clock: no time passes for it until a test
//! calls [`TestServer::advance`], so TTLs, idle times and `uptime` read
//! exactly what the test says, however slow the machine. (Time-driven
//! background policies such as the slab automover wait for it too.)
#![allow(dead_code)] // each test binary uses a different part

use corecache::clock::Clock;
use corecache::config::{Config, RuntimeKind};
use corecache::server::{self, Router, RunningServer, StartError};
use loadgen::shard::connect_to_core;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// Threads of a [`TestServer`] unless a test adjusts it.
pub const THREADS: usize = 2;
/// Shards of a [`TestServer`] unless a test adjusts it: two per thread.
pub const SHARDS: usize = 4;

/// A server running in this process; stopped when dropped.
pub struct TestServer {
    server: Option<RunningServer>,
    pub addr: SocketAddr,
    /// Where TLS clients connect, when TLS is on.
    pub tls_addr: Option<SocketAddr>,
    /// Each thread's own port (`--port-per-core`), by thread; empty when off.
    pub per_core: Vec<SocketAddr>,
    pub runtime: RuntimeKind,
    /// With `--auth-file`: the login the helpers send before `stats`.
    pub login: Option<String>,
}

impl TestServer {
    /// [`THREADS`] threads, [`SHARDS`] shards (so each thread owns two),
    /// unpinned so tests running side by side do not fight over CPUs.
    pub fn start(runtime: RuntimeKind) -> TestServer {
        TestServer::with(runtime, |_| {})
    }

    /// Like [`TestServer::start`], with the config adjusted first.
    pub fn with(runtime: RuntimeKind, adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::try_with(runtime, adjust).expect("server starts")
    }

    /// Like [`TestServer::with`], returning why the server did not start.
    pub fn try_with(
        runtime: RuntimeKind,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<TestServer, server::StartError> {
        let mut config = Config::defaults(&[0, 1]);
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.threads = THREADS;
        config.shards = SHARDS;
        config.pin = false;
        config.runtime = runtime;
        config.ttl_tick = Duration::from_millis(20);
        adjust(&mut config);
        let server = server::start_with_clock(config, Clock::held())?;
        let addr = server.local_addr();
        let tls_addr = server.tls_addr();
        let per_core = server.per_core_addrs().to_vec();
        Ok(TestServer {
            server: Some(server),
            addr,
            tls_addr,
            per_core,
            runtime,
            login: None,
        })
    }

    /// Moves the server's clock forward by `by`, at once. The expiry
    /// wheel catches up on its next tick (see [`TestServer::wait_for_ticks`]);
    /// reads see the new time straight away.
    pub fn advance(&self, by: Duration) {
        self.server.as_ref().expect("running").clock().advance(by);
    }

    /// Waits until the expiry wheel has run over every shard since this
    /// call began, so a test that moved the clock sees what the wheel did,
    /// or did not, reclaim.
    pub fn wait_for_ticks(&self) {
        let ticking = match self.runtime {
            RuntimeKind::ThreadPerCore => 0..2,
            // One tick task for every shard, counted on thread 0.
            RuntimeKind::WorkStealing => 0..1,
        };
        let ticks = || -> Vec<u64> {
            ticking
                .clone()
                .map(|thread| self.stat_u64("threads", &format!("thread:{thread}:expiry_ticks")))
                .collect()
        };
        let start = ticks();
        // A tick under way at the first reading may have read the clock
        // before the test moved it; the one after it cannot have.
        eventually("two expiry ticks on every thread", || {
            ticks()
                .iter()
                .zip(&start)
                .all(|(now, then)| *now >= then + 2)
        });
    }

    /// Sends `bytes` on `c` and waits until the server has read all of
    /// them, so the test knows the server holds them (whatever it did with
    /// them). No other client may send to the server meanwhile.
    pub fn send_and_wait_read(&self, c: &mut Raw, bytes: &[u8]) {
        // Each poll is a `stats` on a new connection (after a login, with
        // auth on): the server counts those bytes before it answers.
        let poll = ("stats\r\n".len() + self.login.as_ref().map_or(0, String::len)) as u64;
        let mut want = self.stat_u64("", "bytes_read") + bytes.len() as u64;
        c.send(bytes);
        eventually("the server read what was sent", || {
            want += poll;
            let seen = self.stat_u64("", "bytes_read");
            assert!(seen <= want, "bytes_read {seen}, but only {want} were sent");
            seen == want
        });
    }

    /// Sends each piece only after the server has read the one before, so
    /// the server gets every piece in a read of its own.
    pub fn send_in_separate_reads<'a>(
        &self,
        c: &mut Raw,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) {
        for piece in pieces {
            self.send_and_wait_read(c, piece);
        }
    }

    /// A new raw connection.
    pub fn connect(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// A new connection that `thread` serves (thread-per-core: the kernel
    /// picks a listener by hash, so connect until it picks that one).
    pub fn connect_on(&self, thread: usize) -> Raw {
        assert_eq!(self.runtime, RuntimeKind::ThreadPerCore);
        let mut found = None;
        eventually(&format!("a connection on thread {thread}"), || {
            let mut c = self.connect();
            if c.thread() == thread {
                found = Some(c);
            }
            found.is_some()
        });
        found.unwrap()
    }

    /// The value of one `stats` field, read over a new connection.
    pub fn stat(&self, args: &str, name: &str) -> String {
        let mut c = self.connect();
        if let Some(login) = &self.login {
            c.expect(login, "STORED\r\n");
        }
        let stats = c.stats(args);
        stats
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"))
            .1
            .clone()
    }

    /// Asserts that exactly `ops` keyed operations crossed threads
    /// (thread-per-core; the work-stealing runtime never forwards).
    #[track_caller]
    pub fn assert_forwarded_exactly(&self, ops: u64) {
        let forwarded = self.stat_u64("", "forwarded_requests");
        match self.runtime {
            RuntimeKind::ThreadPerCore => assert_eq!(forwarded, ops),
            RuntimeKind::WorkStealing => assert_eq!(forwarded, 0),
        }
    }

    /// Asserts that some requests crossed threads, for traffic whose
    /// exact count the test cannot know (a client library's or loadgen's).
    pub fn assert_forwarded(&self) {
        let forwarded = self.stat_u64("", "forwarded_requests");
        match self.runtime {
            RuntimeKind::ThreadPerCore => assert!(forwarded > 0, "nothing was forwarded"),
            RuntimeKind::WorkStealing => assert_eq!(forwarded, 0),
        }
    }

    /// Waits (up to 10 s) until a numeric stat equals `value`: for effects
    /// the server completes in the background, such as the expiry wheel or
    /// the sweep after `flush_all`. Returns the last value seen.
    pub fn wait_for_stat(&self, name: &str, value: u64) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.stat_u64("", name);
            if seen == value || std::time::Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A numeric stat.
    pub fn stat_u64(&self, args: &str, name: &str) -> u64 {
        self.stat(args, name).parse().expect("a number")
    }

    /// A server with a shard-aware port, and that port's address. The port
    /// is one the OS just had free; if something took it meanwhile, another.
    pub fn shard_aware(
        runtime: RuntimeKind,
        threads: usize,
        max_connections: usize,
    ) -> (TestServer, SocketAddr) {
        TestServer::shard_aware_with(runtime, threads, |config| {
            config.max_connections = max_connections;
        })
    }

    /// Like [`TestServer::shard_aware`], with the config adjusted first.
    pub fn shard_aware_with(
        runtime: RuntimeKind,
        threads: usize,
        adjust: impl Fn(&mut Config),
    ) -> (TestServer, SocketAddr) {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let started = TestServer::try_with(runtime, |config| {
                config.threads = threads;
                config.shards = 2 * threads;
                config.cpus = vec![0; threads];
                config.shard_aware_port = port;
                adjust(config);
            });
            match started {
                Ok(server) => {
                    let shard_aware = SocketAddr::new(server.addr.ip(), port);
                    return (server, shard_aware);
                }
                Err(StartError::ShardAwareBind { .. }) => continue,
                Err(e) => panic!("server did not start: {e}"),
            }
        }
        panic!("no free port for the shard-aware listener in 20 tries");
    }

    /// A thread-per-core server of `threads` threads (two shards each)
    /// with `--port-per-core`, adjusted by `adjust`; its ports are in
    /// [`TestServer::per_core`]. The base is a port the OS just had free;
    /// if one of the ports from it is taken, another base.
    pub fn per_core_with(threads: usize, adjust: impl Fn(&mut Config)) -> TestServer {
        for _ in 0..20 {
            let base = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let started = TestServer::try_with(RuntimeKind::ThreadPerCore, |config| {
                config.threads = threads;
                config.shards = 2 * threads;
                config.cpus = vec![0; threads];
                config.port_per_core = base;
                adjust(config);
            });
            match started {
                Ok(server) => return server,
                Err(StartError::PerCoreBind { .. }) => continue,
                Err(e) => panic!("server did not start: {e}"),
            }
        }
        panic!("no free run of per-core ports in 20 tries");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// A client speaking raw protocol bytes.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connects, with a read timeout so a missing reply fails the test
    /// instead of hanging it.
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    /// Connects with a receive buffer of a few KiB, so a large reply fills
    /// it and the server's writes come back partial.
    pub fn connect_small_window(addr: SocketAddr) -> Raw {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw { stream }
    }

    /// Sends bytes without waiting for anything.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).unwrap_or_else(|e| {
            panic!("reading {n} bytes: {e}");
        });
        buf
    }

    /// Sends `request` and asserts the reply is exactly `expected`.
    #[track_caller]
    pub fn expect(&mut self, request: &str, expected: &str) {
        self.send(request.as_bytes());
        let got = self.read_exact(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            expected,
            "reply to {request:?}"
        );
    }

    /// Reads until the reply ends with `terminator`.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(terminator) {
            let n = self.stream.read(&mut buf).expect("read");
            assert!(
                n > 0,
                "connection closed after {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// `stats <args>` as name/value pairs, in order.
    pub fn stats(&mut self, args: &str) -> Vec<(String, String)> {
        let request = if args.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {args}\r\n")
        };
        self.send(request.as_bytes());
        let reply = self.read_until(b"END\r\n");
        String::from_utf8(reply)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let mut parts = line.strip_prefix("STAT ")?.splitn(2, ' ');
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect()
    }

    /// The thread serving this connection, as `stats conns` reports it.
    pub fn thread(&mut self) -> usize {
        let mine = format!("tcp:{}", self.stream.local_addr().unwrap());
        let conns = self.stats("conns");
        let (key, _) = conns
            .iter()
            .find(|(k, v)| k.ends_with(":addr") && *v == mine)
            .unwrap_or_else(|| panic!("{mine} not in {conns:?}"));
        let name = key.replace(":addr", ":thread");
        let (_, thread) = conns.iter().find(|(k, _)| *k == name).unwrap();
        thread.parse().unwrap()
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}

/// A connection to `addr` from a local port `p` with `p % threads == core`.
pub fn connect_to(addr: SocketAddr, threads: usize, core: usize, next: &mut u32) -> Raw {
    let stream = connect_to_core(addr, threads, core, next).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    Raw { stream }
}

/// Defines one test per runtime from a body taking a started server
/// (doc comments on the bodies are kept on both tests).
#[macro_export]
macro_rules! both_runtimes {
    ($($(#[$attr:meta])* fn $name:ident($server:ident) $body:block)*) => {
        mod thread_per_core {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    let $server = $crate::common::TestServer::start(
                        corecache::config::RuntimeKind::ThreadPerCore,
                    );
                    $body
                }
            )*
        }
        mod work_stealing {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    let $server = $crate::common::TestServer::start(
                        corecache::config::RuntimeKind::WorkStealing,
                    );
                    $body
                }
            )*
        }
    };
}

/// One test per runtime, each calling `$body` (a function taking the
/// runtime) with it: for tests that start their own servers.
#[macro_export]
macro_rules! per_runtime {
    ($($name:ident => $body:path;)*) => {
        $(
            mod $name {
                #[test]
                fn thread_per_core() {
                    $body(corecache::config::RuntimeKind::ThreadPerCore);
                }
                #[test]
                fn work_stealing() {
                    $body(corecache::config::RuntimeKind::WorkStealing);
                }
            }
        )*
    };
}

/// The router of a [`TestServer`] of [`SHARDS`] shards on [`THREADS`]
/// threads: the server's own placement of keys.
fn router() -> Router {
    Router::new(SHARDS, THREADS)
}

/// The shard that holds `key` on a [`TestServer`], as the router says.
pub fn shard_of(key: &str) -> usize {
    router().shard(Router::hash(key.as_bytes()))
}

/// The thread that owns `key` on a [`TestServer`], as the router says.
pub fn owner(key: &str) -> usize {
    router().owner(shard_of(key))
}

/// A key a [`TestServer`] places on `thread`, found by asking the router.
pub fn key_on_thread(thread: usize, seed: usize) -> String {
    (seed..)
        .map(|i| format!("key:{i}"))
        .find(|key| owner(key) == thread)
        .unwrap()
}

/// Polls `done` every 10 ms until it is true; fails the test after 10 s.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "after 10 s, still not: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process (a server binary) killed when dropped, so a failing
/// test never leaves a server running behind it.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `corecache` binary on a free port with `args` and waits for
/// its "listening" line; the process is killed when the guard drops.
pub fn spawn_binary(args: &[&str]) -> (KillOnDrop, SocketAddr) {
    spawn_program(std::path::Path::new(env!("CARGO_BIN_EXE_corecache")), args)
}

/// Starts the server binary at `program` (a debug or a release build) on a
/// free port with `args` and waits for its "listening" line; the process
/// is killed when the guard drops.
pub fn spawn_program(program: &std::path::Path, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(program)
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("server logs before exiting").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// The release build of the server, built first if it is missing or
/// stale (`cargo build --release`, a no-op when it is fresh): for tests
/// that measure the server's own memory or speed, which a debug build or
/// an in-process server (whose RSS includes the test harness) would not
/// show. `bash tests/run.sh` builds it before the tests run.
pub fn release_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/debug/corecache -> target/
            let debug = std::path::Path::new(env!("CARGO_BIN_EXE_corecache"));
            let target = debug.parent().and_then(|d| d.parent()).unwrap();
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--release", "--quiet", "--bin", "corecache"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("CARGO_TARGET_DIR", target)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo build --release failed");
            target.join("release").join("corecache")
        })
        .clone()
}

/// A field of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib * 1024
}

impl Raw {
    /// Reads everything until the server closes the connection.
    pub fn read_to_close(&mut self) -> String {
        let mut got = Vec::new();
        // A reset after the reply (the server closed with input unread)
        // ends the stream like a close.
        let _ = self.stream.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    }
}

impl Raw {
    /// Reads until `terminator` has arrived `count` times (a pipelined
    /// burst's replies may come in any number of reads).
    pub fn read_until_count(&mut self, terminator: &[u8], count: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let mut seen = 0;
        let mut scanned: usize = 0;
        while seen < count {
            let n = self.stream.read(&mut buf).expect("read");
            assert!(n > 0, "connection closed after {seen} of {count} replies");
            got.extend_from_slice(&buf[..n]);
            // Count only terminators that end in the new bytes.
            let from = scanned.saturating_sub(terminator.len() - 1);
            seen += got[from..]
                .windows(terminator.len())
                .filter(|w| *w == terminator)
                .count();
            scanned = got.len();
        }
        got
    }
}

/// A scratch directory, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory named for `name`, this process and this thread.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "corecache-test-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` inside it; returns the path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
