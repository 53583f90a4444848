//! The bundled load generator against a real corecache, in both runtimes:
//! a few thousand requests with every value verified (gets and sets, and
//! the mixed deletes, appends and incrs of `--mix`), and the JSON report
//! checked against its documented schema (docs/loadgen.md).

mod common;
#[path = "common/tls.rs"]
mod pki;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: loadgen::Args,
}

fn run(server: &common::TestServer, extra: &[&str]) -> serde_json::Value {
    run_at(server.addr, extra)
}

fn run_at(addr: std::net::SocketAddr, extra: &[&str]) -> serde_json::Value {
    run_sized(addr, 8, 2000, extra)
}

/// [`run_at`] with `connections` connections over `keys` keys.
fn run_sized(
    addr: std::net::SocketAddr,
    connections: usize,
    keys: u64,
    extra: &[&str],
) -> serde_json::Value {
    let addr = addr.to_string();
    let (connections, keys) = (connections.to_string(), keys.to_string());
    let mut argv = vec![
        "loadgen",
        "--server",
        &addr,
        "--threads",
        "1",
        "--connections",
        &connections,
        "--pipeline",
        "8",
        "--keys",
        &keys,
        "--prefill",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
    ];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).expect("loadgen flags");
    let config = loadgen::Config::from_args(&cli.args).expect("loadgen config");
    let report = loadgen::run(&config).expect("loadgen runs");
    // The same serialisation `--json` writes.
    serde_json::from_str(&serde_json::to_string_pretty(&report).unwrap()).unwrap()
}

both_runtimes! {
    fn strict_verification_with_multigets_and_the_json_schema(server) {
        let json = run(&server, &["--verify=strict", "--multiget", "5", "--get-ratio", "0.7"]);
        // Some requests, so the checks below are about something; how many
        // depends on the machine, so no floor.
        let n = |field: &str| json[field].as_u64().unwrap_or_else(|| panic!("{field}"));
        assert!(n("requests") > 0, "{json:#}");
        assert_eq!(n("requests"), n("gets") + n("sets"));
        assert_eq!(n("get_keys"), 5 * n("gets"));
        let rate = n("requests") as f64 / json["elapsed_s"].as_f64().unwrap();
        assert!((json["ops_per_sec"].as_f64().unwrap() - rate).abs() < 1e-6 * rate);
        // Strict mode: every acknowledged write reads back, so no misses.
        assert_eq!(json["hit_ratio"].as_f64(), Some(1.0), "{json:#}");
        assert_eq!(json["errors"]["total"].as_u64(), Some(0), "{json:#}");
        for p in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            let v = json["latency_us"][p].as_f64().unwrap_or_else(|| panic!("latency_us.{p}"));
            assert!(v > 0.0, "latency_us.{p} = {v}");
        }
        assert!(json["latency_us"]["p50"].as_f64() <= json["latency_us"]["max"].as_f64());
        assert_eq!(json["config"]["pipeline"].as_u64(), Some(8));
        assert_eq!(json["config"]["keys"].as_u64(), Some(2000));
        // Multi-gets spanned shards, so in thread-per-core mode keys crossed threads.
        server.assert_forwarded();
    }

    /// What the soak checks at length, briefly: nothing acknowledged is
    /// lost. 200 pipelined connections, each checking every reply to its
    /// sets, gets, deletes, appends and incrs against its model of its own
    /// keys.
    fn strict_mixed_operations_over_200_connections(server) {
        let json = run_sized(server.addr, 200, 20_000, &[
            "--verify=strict", "--mix", "set=15,get=50,delete=10,append=10,incr=15",
            "--multiget", "3", "--value-size", "24-200",
        ]);
        assert_eq!(json["errors"]["total"].as_u64(), Some(0), "{json:#}");
        let n = |field: &str| json[field].as_u64().unwrap_or_else(|| panic!("{field}"));
        assert_eq!(
            n("requests"),
            n("gets") + n("sets") + n("deletes") + n("appends") + n("incrs"),
            "{json:#}"
        );
        for (sent, found) in [("deletes", "deleted"), ("appends", "appended"), ("incrs", "incremented")] {
            assert!(n(found) > 0 && n(found) <= n(sent), "{sent}/{found}: {json:#}");
        }
        // The server saw at least what loadgen counted in its window.
        assert!(server.stat_u64("", "delete_hits") >= n("deleted"), "{json:#}");
        assert!(server.stat_u64("", "incr_hits") >= n("incremented"), "{json:#}");
        // Strict mode needs every key kept.
        assert_eq!(server.stat_u64("", "evictions"), 0);
        assert_eq!(json["config"]["mix"]["incr"].as_u64(), Some(15));
    }

    fn zipf_mixed_sizes_and_an_open_loop_rate(server) {
        let json = run(&server, &[
            "--verify", "--distribution", "zipf:0.99", "--value-size", "24-5000",
            "--rate", "4000",
        ]);
        assert_eq!(json["errors"]["total"].as_u64(), Some(0), "{json:#}");
        // 4000/s for 500 ms is 2000 sends: a run can fall short, never over.
        let requests = json["requests"].as_u64().unwrap();
        assert!(requests > 0 && requests <= 2000, "{json:#}");
        assert_eq!(json["config"]["rate"].as_f64(), Some(4000.0));
    }
}

per_runtime! {
    tls => super::tls_connections_with_every_value_verified;
}

fn tls_connections_with_every_value_verified(runtime: corecache::config::RuntimeKind) {
    let pki = pki::Pki::new("loadgen");
    let server = common::TestServer::with(runtime, |config| {
        config.tls = Some(pki.server(false, Some("127.0.0.1:0".parse().unwrap())));
    });
    let ca = pki.ca.to_str().unwrap();
    let json = run_at(
        server.tls_addr.unwrap(),
        &["--tls-ca", ca, "--verify=strict"],
    );
    assert!(json["requests"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(json["errors"]["total"].as_u64(), Some(0), "{json:#}");
    assert_eq!(json["config"]["tls_ca"].as_str(), Some(ca));
    // loadgen's 8 connections and the one reading the stat; no handshake
    // failed.
    assert_eq!(server.stat_u64("", "total_connections"), 8 + 1);
    assert_eq!(server.stat_u64("", "ssl_handshake_errors"), 0);
}

/// `loadgen --shard-aware` against a real thread-per-core server with a
/// shard-aware port: it reads the rule from `stats settings`, sends every
/// key (multi-gets split by owner) on its owner core's connection, and the
/// server forwards nothing, with every value verified.
#[test]
fn shard_aware_loadgen_forwards_nothing() {
    let (server, shard_aware) =
        common::TestServer::shard_aware(corecache::config::RuntimeKind::ThreadPerCore, 2, 1024);
    let json = run(
        &server,
        &[
            "--shard-aware",
            "--verify=strict",
            "--multiget",
            "5",
            "--get-ratio",
            "0.7",
        ],
    );
    let n = |field: &str| json[field].as_u64().unwrap_or_else(|| panic!("{field}"));
    assert!(n("gets") > 0 && n("sets") > 0, "{json:#}");
    assert_eq!(n("get_keys"), 5 * n("gets"));
    assert_eq!(json["errors"]["total"].as_u64(), Some(0), "{json:#}");
    assert_eq!(json["hit_ratio"].as_f64(), Some(1.0), "{json:#}");
    assert_eq!(
        json["shard_map"],
        serde_json::json!({"threads": 2, "shards": 4, "port": shard_aware.port()})
    );
    // 8 slots, one connection per core each, all on the shard-aware port
    // (plus the one `stats settings` asked on), admitted once each.
    assert_eq!(server.stat_u64("", "total_connections"), 8 * 2 + 1 + 1);
    server.assert_forwarded_exactly(0);
}

/// `loadgen --servers` over a thread-per-core server's per-core ports:
/// one socket per port in each slot, each key (multi-gets split) sent to
/// the port its consistent hash picks, every value verified, nothing
/// forwarded, and each port's thread given work.
#[test]
fn loadgen_over_the_per_core_ports_forwards_nothing() {
    let server = common::TestServer::per_core_with(3, |_| {});
    let servers: Vec<String> = server.per_core.iter().map(|a| a.to_string()).collect();
    let servers = servers.join(",");
    let argv = [
        "loadgen",
        "--servers",
        &servers,
        "--connections",
        "6",
        "--pipeline",
        "8",
        "--keys",
        "3000",
        "--prefill",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--verify=strict",
        "--multiget",
        "4",
        "--get-ratio",
        "0.7",
    ];
    let cli = Cli::try_parse_from(argv).expect("loadgen flags");
    let config = loadgen::Config::from_args(&cli.args).expect("loadgen config");
    assert_eq!(config.server, server.per_core[0]);
    let report = loadgen::run(&config).expect("loadgen runs");
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let n = |field: &str| json[field].as_u64().unwrap_or_else(|| panic!("{field}"));
    assert!(n("gets") > 0 && n("sets") > 0, "{json:#}");
    assert_eq!(n("get_keys"), 4 * n("gets"));
    assert_eq!(json["errors"]["total"].as_u64(), Some(0), "{json:#}");
    assert_eq!(json["hit_ratio"].as_f64(), Some(1.0), "{json:#}");
    assert_eq!(json["config"]["servers"].as_array().map(Vec::len), Some(3));
    // 6 slots, one connection per port each.
    assert_eq!(server.stat_u64("", "total_connections"), 6 * 3 + 1);
    for thread in 0..3 {
        let conns = server.stat_u64("threads", &format!("thread:{thread}:total_connections"));
        // Its 6, and maybe some of the `stats` reads on the shared port.
        assert!(conns >= 6, "thread {thread} accepted {conns}");
        let cmds = server.stat_u64("threads", &format!("thread:{thread}:cmd_total"));
        assert!(cmds > 100, "thread {thread} ran {cmds} commands");
    }
    server.assert_forwarded_exactly(0);
    // --servers and --shard-aware, or --server, are refused together.
    assert!(Cli::try_parse_from(["loadgen", "--servers", &servers, "--shard-aware"]).is_err());
    assert!(Cli::try_parse_from(["loadgen", "--servers", &servers, "--server", "x:1"]).is_err());
}

/// `loadgen compare --quick` against the real server, both runtimes and
/// thread-per-core with its shard-aware port and with per-core ports: the
/// matrix reads
/// corecache's own counters around every measured phase.
#[test]
fn compare_records_the_servers_cpu_and_forwarding_counters() {
    #[derive(Parser)]
    struct CompareCli {
        #[command(flatten)]
        args: loadgen::compare::CompareArgs,
    }
    let out = std::env::temp_dir().join(format!("corecache-compare-{}", std::process::id()));
    let cli = CompareCli::try_parse_from([
        "compare",
        "--quick",
        "--corecache",
        env!("CARGO_BIN_EXE_corecache"),
        "--systems",
        "corecache-tpc,corecache-ws,corecache-sa,corecache-pc",
        "--layouts",
        "2shared",
        "--pinning",
        "unpinned",
        "--pipelines",
        "16",
        "--distributions",
        "uniform",
        "--get-ratios",
        "0.9",
        "--multigets",
        "10",
        "--out",
        out.to_str().unwrap(),
    ])
    .expect("compare flags");
    loadgen::compare::compare(&cli.args).expect("compare runs");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{json:#}");
    for cell in cells {
        let server = &cell["samples"][0]["server"];
        let n = |k: &str| {
            server[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {server:#}"))
        };
        assert!(n("requests") > 0 && n("cmd_total") > 0, "{server:#}");
        // Multi-gets of 10 keys: the server counts keys, and commands once.
        assert!(n("requests") > n("cmd_total"), "{server:#}");
        match cell["system"].as_str().unwrap() {
            "corecache-tpc" => {
                // Ten random keys over two threads: most gets forward.
                assert!(n("forwarded_requests") > 0, "{server:#}");
                assert!(n("forward_messages") > 0, "{server:#}");
                assert!(
                    n("forward_messages") <= n("forwarded_requests"),
                    "{server:#}"
                );
                assert!(server["core_wakes"].is_u64(), "{server:#}");
            }
            "corecache-ws" => assert_eq!(n("forwarded_requests"), 0, "{server:#}"),
            // Every key went to its owner's connection on the shard-aware
            // port (corecache-sa) or to a per-core port (corecache-pc),
            // multi-gets split by owner.
            "corecache-sa" | "corecache-pc" => {
                assert_eq!(n("forwarded_requests"), 0, "{server:#}");
                assert_eq!(n("forward_messages"), 0, "{server:#}");
            }
            other => panic!("{other}"),
        }
        assert!(
            server["cpu_us_per_request"].as_f64().is_some(),
            "{server:#}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
