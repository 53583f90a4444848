//! loadgen against a real memcached: the reference server must pass strict
//! verification with no errors, and `--check` (linearizability, write
//! order). Needs `memcached` on PATH (or `$MEMCACHED`);
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

/// A short strict run against `addr`: 8 connections, zipf keys, 24-200
/// byte values, half gets.
fn strict(addr: std::net::SocketAddr) -> loadgen::Config {
    loadgen::Config {
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
    }
}

#[test]
fn memcached_passes_strict_verification() {
    let (_server, addr) = start_memcached();
    let cfg = strict(addr);
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

/// The reference server's replies to deletes, appends and incrs are what
/// strict mode's model predicts, exactly: the model is memcached's
/// semantics, not corecache's.
#[test]
fn memcached_passes_a_strict_mix() {
    let (_server, addr) = start_memcached();
    let cfg = loadgen::Config {
        connections: 50,
        pipeline: 16,
        mix: Some(loadgen::config::parse_mix("set=15,get=50,delete=10,append=10,incr=15").unwrap()),
        multiget: 3,
        ..strict(addr)
    };
    let r = loadgen::run(&cfg).unwrap();
    assert!(!r.failed(), "{r}");
    assert_eq!(r.requests, r.gets + r.sets + r.ops.requests(), "{r}");
    for (sent, found) in [
        (r.ops.deletes, r.ops.deleted),
        (r.ops.appends, r.ops.appended),
        (r.ops.incrs, r.ops.incremented),
    ] {
        assert!(found > 0 && found <= sent, "{r}");
    }
}

/// The reference server passes both checks: its replies are what the
/// checker's model of a memcached key predicts, in some order real time
/// allows, and killed connections' operations count as maybe applied.
/// The model is memcached's own (`Spec::Memcached`): strict but for the
/// unique an `incr` writes into the item a `gets` holds, which the strict
/// model catches (docs/lincheck.md).
#[test]
fn memcached_passes_the_linearizability_and_write_order_checks() {
    use loadgen::lincheck::{CheckConfig, Mode, Spec, run};
    let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    let port = free_port().unwrap();
    let argv = memcached_argv(std::path::Path::new(&bin), port, 2, 64);
    let mut server = ServerProcess::start("memcached", &argv, None).expect("memcached starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    server
        .wait_for_port(addr, Duration::from_secs(10))
        .expect("memcached listens");
    let cfg = CheckConfig {
        connections: 32,
        duration: Duration::from_secs(2),
        kill_every: Some(Duration::from_millis(100)),
        // Small windows, as in tests/lincheck.rs: a loaded machine slows
        // the server, not the search.
        epoch_batches: 1,
        spec: Spec::Memcached,
        ..CheckConfig::new(Mode::Linearizable, addr)
    };
    let r = run(&cfg).unwrap();
    assert!(!r.failed(), "{r}");
    assert!(r.ops > 0 && r.kills > 0 && r.maybe_ops > 0, "{r}");
    // A window the search gives up on is checked no further; a few may,
    // when a loaded machine leaves many operations in flight at once.
    assert!(r.inconclusive_windows * 100 <= r.windows, "{r}");
    let r = run(&CheckConfig {
        connections: 32,
        pipeline: 4,
        duration: Duration::from_secs(1),
        ..CheckConfig::new(Mode::WriteOrder, addr)
    })
    .unwrap();
    assert!(!r.failed(), "{r}");
    assert!(r.order.as_ref().unwrap().checked > 0, "{r}");
}

/// Narrows the workloads to uniform keys, 90% single-key gets.
const UNIFORM_GETS: &[&str] = &[
    "--distributions",
    "uniform",
    "--get-ratios",
    "0.9",
    "--multigets",
    "1",
];

/// Runs `loadgen compare --quick` with `args`, writing into `out`.
fn quick_compare(args: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["compare", "--quick"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn assert_success(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn compare_quick_runs_the_whole_matrix_against_memcached() {
    // Fails here, rather than skipping inside `compare`, when memcached is absent.
    drop(start_memcached());
    let out_dir = std::env::temp_dir().join(format!("loadgen-compare-{}", std::process::id()));
    let out = quick_compare(&["--systems", "memcached"], &out_dir);
    let stdout = assert_success(&out);
    assert!(
        stdout.contains("p16 zipf0.99 50%g mget10") && stdout.contains("machine: "),
        "{stdout}"
    );
    // 2 layouts x 2 pinnings x 16 workloads, one row each.
    let csv = std::fs::read_to_string(out_dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 64, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("1+1,pinned,1,1,uniform,0.90,1,memcached,1,"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .last()
            .unwrap()
            .starts_with("2 shared,unpinned,2,16,zipf:0.99,0.50,10,memcached,1,"),
        "{csv}"
    );
    for svg in ["throughput-cpu.svg", "latency.svg"] {
        let text = std::fs::read_to_string(out_dir.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains(">memcached<"),
            "{svg}"
        );
    }
    let json = read_json(&out_dir.join("results.json"));
    assert_eq!(json["schema"], 2);
    assert!(!json["machine"]["cpu_model"].as_str().unwrap().is_empty());
    assert!(!json["machine"]["kernel"].as_str().unwrap().is_empty());
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 64);
    for cell in cells {
        let command = cell["command"].as_array().unwrap();
        let threads = if cell["layout"] == "1+1" { "1" } else { "2" };
        let t = command.iter().position(|w| w == "-t").unwrap();
        assert_eq!(command[t + 1], threads, "{cell:#}");
        // memcached cannot pin threads: "pinned" is taskset on the layout's CPUs.
        let taskset = match (cell["layout"].as_str(), cell["pinning"].as_str()) {
            (Some("1+1"), Some("pinned")) => serde_json::json!([1]),
            (Some("2 shared"), Some("pinned")) => serde_json::json!([0, 1]),
            _ => serde_json::Value::Null,
        };
        assert_eq!(cell["taskset"], taskset, "{cell:#}");
        let samples = cell["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 1, "--quick runs each cell once");
        let server = &samples[0]["server"];
        assert!(server["requests"].as_u64().unwrap() > 0, "{cell:#}");
        // memcached publishes no forwarding counters.
        assert!(server["forwarded_requests"].is_null() && server["cmd_total"].is_null());
        assert_eq!(samples[0]["report"]["errors"]["total"], 0, "{cell:#}");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn repetitions_are_interleaved_and_their_spread_shown() {
    drop(start_memcached());
    let dir = std::env::temp_dir().join(format!("loadgen-repeat-{}", std::process::id()));
    let script = stand_in_corecache(&dir, "");
    let out = quick_compare(
        &[
            UNIFORM_GETS,
            &[
                "--systems",
                "corecache-tpc,memcached",
                "--corecache",
                script.to_str().unwrap(),
                "--repeat",
                "3",
                "--layouts",
                "1+1",
                "--pinning",
                "unpinned",
                "--pipelines",
                "1,16",
            ],
        ]
        .concat(),
        &dir.join("out"),
    );
    assert_success(&out);
    // Every system runs a cell before the next cell, every cell before
    // the next repetition.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let order: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let r = w.iter().position(|x| *x == "rep")?;
            Some(format!("{} {} {}", w[r + 1], w[r + 2], w[r + 5]))
        })
        .collect();
    let mut expected = Vec::new();
    for rep in 0..3 {
        for p in ["p1", "p16"] {
            for sys in ["corecache-tpc", "memcached"] {
                expected.push(format!("{rep} {p} {sys}"));
            }
        }
    }
    assert_eq!(order, expected, "{stderr}");
    let csv = std::fs::read_to_string(dir.join("out/results.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[col("runs")], "3", "{line}");
        let num = |name: &str| f[col(name)].parse::<f64>().unwrap();
        for m in ["ops_per_sec", "p99_us", "server_cpu_us_per_req"] {
            let (lo, mid, hi) = (num(&format!("{m}_min")), num(m), num(&format!("{m}_max")));
            assert!(lo <= mid && mid <= hi, "{m}: {line}");
        }
    }
    let md = std::fs::read_to_string(dir.join("out/results.md")).unwrap();
    assert!(md.contains("median of 3 run(s) (min–max)"), "{md}");
    let json = read_json(&dir.join("out/results.json"));
    for cell in json["cells"].as_array().unwrap() {
        let reps: Vec<u64> = cell["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["rep"].as_u64().unwrap())
            .collect();
        assert_eq!(reps, vec![0, 1, 2]);
    }
    let _ = std::fs::remove_dir_all(&dir);
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

#[test]
fn compare_drives_corecache_flags() {
    // A stand-in `corecache` that logs its flags and serves with memcached,
    // so the corecache path of `compare` is exercised without the server.
    drop(start_memcached());
    let dir = std::env::temp_dir().join(format!("loadgen-fake-corecache-{}", std::process::id()));
    let log = dir.join("args.log");
    let script = stand_in_corecache(&dir, &format!("echo \"$@\" >> {}", log.display()));
    let out = quick_compare(
        &[
            UNIFORM_GETS,
            &[
                "--systems",
                "corecache-tpc,corecache-ws",
                "--corecache",
                script.to_str().unwrap(),
                "-m",
                "64",
                "--pipelines",
                "1",
            ],
        ]
        .concat(),
        &dir.join("out"),
    );
    let stdout = assert_success(&out);
    assert!(
        stdout.contains("corecache-tpc") && stdout.contains("corecache-ws"),
        "{stdout}"
    );
    // Each group starts both runtimes, in layout and pinning order.
    let args = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = args
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(&w[..3], ["--listen", "127.0.0.1", "--port"], "{l}");
            w[4..].join(" ")
        })
        .collect();
    let expected = [
        "--threads 1 --cpus 1 --runtime thread-per-core -m 64",
        "--threads 1 --cpus 1 --runtime work-stealing -m 64",
        "--threads 1 --no-pin --runtime thread-per-core -m 64",
        "--threads 1 --no-pin --runtime work-stealing -m 64",
        "--threads 2 --cpus 0,1 --runtime thread-per-core -m 64",
        "--threads 2 --cpus 0,1 --runtime work-stealing -m 64",
        "--threads 2 --no-pin --runtime thread-per-core -m 64",
        "--threads 2 --no-pin --runtime work-stealing -m 64",
    ];
    assert_eq!(lines, expected, "{args}");
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
        // Mid-matrix: as soon as loadgen's first run stores keys in it
        // (the fifteen workloads after it take 100 ms each at least).
        while sets_served(port).unwrap_or(0) == 0 {
            waited("loadgen never stored anything in the stand-in");
        }
        // SAFETY: plain kill(2) of the server this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = quick_compare(
        &[
            "--systems",
            "corecache-tpc,memcached",
            "--corecache",
            script.to_str().unwrap(),
            "--layouts",
            "1+1",
            "--pinning",
            "pinned",
        ],
        &dir.join("out"),
    );
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
        csv.lines().filter(|l| l.contains(",memcached,")).count(),
        16,
        "{csv}"
    );
    assert!(!csv.contains("corecache-tpc"), "{csv}");
    let _ = std::fs::remove_dir_all(&dir);
}
