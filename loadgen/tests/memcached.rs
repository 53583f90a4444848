//! loadgen against a real memcached: the reference server must pass strict
//! verification with no errors. Needs `memcached` on PATH (or `$MEMCACHED`);
//! fails, rather than skips, when it is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use loadgen::server_process::{ServerProcess, free_port, memcached_argv};

/// Starts memcached (one thread, 64 MiB) on a free port with the same
/// code `loadgen compare` uses, and waits until it listens.
fn start_memcached() -> (ServerProcess, std::net::SocketAddr) {
    let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    let port = free_port().unwrap();
    let argv = memcached_argv(std::path::Path::new(&bin), port, 1, 64);
    let mut server = ServerProcess::start("memcached", &argv, None).unwrap_or_else(|e| {
        panic!("this test needs memcached ({e:#}); install it (apt-get install memcached) or set $MEMCACHED")
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    server
        .wait_for_port(addr, Duration::from_secs(10))
        .expect("memcached listens");
    (server, addr)
}

#[test]
fn memcached_passes_strict_verification() {
    let (_server, addr) = start_memcached();
    let cfg = loadgen::Config {
        server: addr,
        connections: 8,
        threads: 2,
        pipeline: 8,
        keys: 10_000,
        value_min: 24,
        value_max: 200,
        get_ratio: 0.5,
        distribution: loadgen::Distribution::Zipf { s: 0.99 },
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        prefill: true,
        verify: loadgen::VerifyMode::Strict,
        ..loadgen::Config::default()
    };
    let r = loadgen::run(&cfg).unwrap();
    assert!(!r.failed(), "{r}");
    assert!(r.requests > 0, "{r}");
    assert_eq!(r.hit_ratio, 1.0, "{r}");

    // Multi-gets: values must come back in order, each intact.
    let r = loadgen::run(&loadgen::Config {
        multiget: 8,
        seed: 2,
        ..cfg
    })
    .unwrap();
    assert!(!r.failed(), "{r}");
    assert_eq!(r.get_keys, r.gets * 8, "{r}");
    assert_eq!(r.hit_ratio, 1.0, "{r}");
}

#[test]
fn compare_runs_the_matrix_against_memcached() {
    // Fails here, rather than skipping inside `compare`, when memcached is absent.
    drop(start_memcached());
    let out_dir = std::env::temp_dir().join(format!("loadgen-compare-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "compare",
            "--systems",
            "memcached",
            "--duration",
            "150ms",
            "--warmup",
            "50ms",
        ])
        .args(["--keys", "2000", "--connections", "8"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("p16 zipf0.99 50%g") && stdout.contains("machine: nproc"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out_dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("memcached,1,uniform,0.90,"),
        "{csv}"
    );
    let svg = std::fs::read_to_string(out_dir.join("latency.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("memcached p99"),
        "bad SVG"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap())
            .unwrap();
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert_eq!(json["systems"][0]["reports"].as_array().unwrap().len(), 8);
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn compare_fails_when_corecache_is_missing() {
    let out_dir =
        std::env::temp_dir().join(format!("loadgen-compare-missing-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "compare",
            "--systems",
            "corecache-tpc",
            "--corecache",
            "/nonexistent/corecache",
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/corecache"));
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// Writes an executable stand-in `corecache` into `dir`: it runs `prelude`
/// (shell), then serves with memcached on the `--port` it was given.
fn stand_in_corecache(dir: &std::path::Path, prelude: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("corecache");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{prelude}\nwhile [ $# -gt 0 ]; do [ \"$1\" = --port ] && port=$2; shift; done\n\
             exec memcached -u nobody -U 0 -l 127.0.0.1 -t 1 -m 64 -p \"$port\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Runs a short `loadgen compare` of `systems` with `corecache` as the
/// server binary, writing into `out`.
fn short_compare(
    systems: &str,
    corecache: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["compare", "--systems", systems, "--corecache"])
        .arg(corecache)
        .args([
            "--duration",
            "100ms",
            "--warmup",
            "0s",
            "--keys",
            "500",
            "--connections",
            "4",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn compare_drives_corecache_flags() {
    // A stand-in `corecache` that logs its flags and serves with memcached,
    // so the corecache path of `compare` is exercised before the server
    // exists.
    drop(start_memcached());
    let dir = std::env::temp_dir().join(format!("loadgen-fake-corecache-{}", std::process::id()));
    let log = dir.join("args.log");
    let script = stand_in_corecache(&dir, &format!("echo \"$@\" >> {}", log.display()));
    let out = short_compare(
        "corecache-tpc,corecache-ws",
        &script,
        &dir.join("out"),
        &["-m", "64"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("corecache-tpc") && stdout.contains("corecache-ws"),
        "{stdout}"
    );
    let args = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines.len(), 2, "{args}");
    assert!(
        lines[0].contains("--runtime thread-per-core") && lines[0].contains("--cpus "),
        "{args}"
    );
    assert!(
        lines[1].contains("--runtime work-stealing") && lines[1].contains("-m 64"),
        "{args}"
    );
    assert!(lines[0].starts_with("--listen 127.0.0.1 --port "), "{args}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sets the memcached on `port` has served, or None while it is not up.
fn sets_served(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    c.write_all(b"stats\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(b"END\r\n") {
        let n = c.read(&mut buf).ok().filter(|&n| n > 0)?;
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&reply)
        .lines()
        .find_map(|line| line.strip_prefix("STAT cmd_set "))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn compare_survives_a_crashing_server() {
    drop(start_memcached());
    let dir = std::env::temp_dir().join(format!("loadgen-crashing-{}", std::process::id()));
    // A stand-in that records its pid and flags; the test kills it
    // mid-matrix.
    let pidfile = dir.join("pid");
    let script = stand_in_corecache(&dir, &format!("echo $$ \"$@\" > {}", pidfile.display()));
    let killer = std::thread::spawn(move || {
        let t0 = Instant::now();
        let waited = |what: &str| {
            assert!(t0.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let (pid, port) = loop {
            let line = std::fs::read_to_string(&pidfile).unwrap_or_default();
            let words: Vec<&str> = line.split_whitespace().collect();
            let port = words
                .iter()
                .position(|w| *w == "--port")
                .map(|i| words[i + 1]);
            if line.ends_with('\n')
                && let (Ok(pid), Some(Ok(port))) = (words[0].parse::<i32>(), port.map(str::parse))
            {
                break (pid, port);
            }
            waited("the stand-in never started");
        };
        // Mid-matrix: as soon as loadgen's first cell stores keys in it
        // (the seven cells after it take 100 ms each at least).
        while sets_served(port).unwrap_or(0) == 0 {
            waited("loadgen never stored anything in the stand-in");
        }
        // SAFETY: plain kill(2) of the server this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = short_compare("corecache-tpc,memcached", &script, &dir.join("out"), &[]);
    killer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // It died mid-matrix: the matrix was under way, not refused at start.
    assert!(
        stderr.contains("skipping the rest of corecache-tpc"),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(dir.join("out/results.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("memcached,")).count(),
        8,
        "{csv}"
    );
    assert!(!csv.contains("corecache-tpc"), "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}
