//! Unit tests of the configuration: flags, file, defaults, and the errors
//! that name a bad setting.

use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("corecache").chain(args.iter().copied())).unwrap()
}

const FOUR: [usize; 4] = [0, 1, 2, 3];

#[test]
fn defaults_follow_the_machine() {
    let config = Config::from_cli(&cli(&[]), &FOUR).unwrap();
    assert_eq!(config, Config::defaults(&FOUR));
    assert_eq!(config.threads, 4);
    assert_eq!(config.shards, 4);
    assert_eq!(config.listen.to_string(), "127.0.0.1:11211");
}

#[test]
fn flags_override_the_file() {
    let text =
        "threads = 2\nmemory = 128\nlisten = \"0.0.0.0:9999\"\nruntime = \"work-stealing\"\n";
    let config = Config::from_toml(text, &cli(&["-t", "3", "-p", "1234"]), &FOUR).unwrap();
    assert_eq!(config.threads, 3);
    assert_eq!(config.cpus, [0, 1, 2]);
    assert_eq!(config.memory, 128 * MIB);
    assert_eq!(config.listen.to_string(), "0.0.0.0:1234");
    assert_eq!(config.runtime, RuntimeKind::WorkStealing);
}

#[test]
fn the_shipped_default_file_is_the_built_in_default() {
    let text = include_str!("../../configs/default.toml");
    let config = Config::from_toml(text, &cli(&[]), &FOUR).unwrap();
    assert_eq!(config, Config::defaults(&FOUR));
}

#[test]
fn idle_timeout_reads_from_the_file() {
    let parsed = Config::from_toml("idle-timeout = \"30s\"", &cli(&[]), &FOUR).unwrap();
    assert_eq!(parsed.idle_timeout, Duration::from_secs(30));
}

/// Every flag has its key in configs/default.toml (commented out where
/// the default depends on the machine) and its row in the README's
/// table, so a new flag cannot be left out of either.
#[test]
fn every_flag_is_in_the_default_file_and_the_readme() {
    use clap::CommandFactory;
    let toml = include_str!("../../configs/default.toml");
    let readme = include_str!("../../README.md");
    for arg in Cli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let row = |line: &str| {
            let flags = line.split('|').nth(1).unwrap_or_default();
            flags
                .split([' ', ',', '`'])
                .any(|word| word == format!("--{long}"))
        };
        assert!(readme.lines().any(row), "README: --{long}");
        // The file's own key for the flag: `pin` for `--no-pin`.
        let key = long.strip_prefix("no-").unwrap_or(long);
        if key == "config" {
            continue;
        }
        let set = |line: &str| {
            let line = line.trim_start_matches("# ");
            line.starts_with(&format!("{key} = "))
        };
        assert!(toml.lines().any(set), "configs/default.toml: {key}");
    }
}

/// The pinning rule (`PinRule`): pinned only when the threads leave CPUs
/// to other work or `--cpus` names them; a flag overrides the file and
/// the rule.
#[test]
fn threads_are_pinned_only_where_they_have_cpus_of_their_own() {
    let pin = |args: &[&'static str], file: &str| {
        let c = Config::from_toml(file, &cli(args), &FOUR).unwrap();
        (c.pin, c.pin_rule)
    };
    use PinRule::*;
    assert_eq!(pin(&[], ""), (false, SharesEveryCpu));
    assert_eq!(pin(&["-t", "3"], ""), (true, LeavesCpus));
    assert_eq!(pin(&["-t", "6"], ""), (false, SharesEveryCpu));
    assert_eq!(pin(&["--cpus", "0-3"], ""), (true, CpusNamed));
    assert_eq!(pin(&["--pin"], ""), (true, Given));
    assert_eq!(pin(&["-t", "3", "--no-pin"], ""), (false, Given));
    assert_eq!(pin(&[], "pin = true"), (true, Given));
    assert_eq!(pin(&["--no-pin"], "pin = true"), (false, Given));
    assert_eq!(pin(&["--cpus", "1", "--no-pin"], ""), (false, Given));
    assert!(Cli::try_parse_from(["corecache", "--pin", "--no-pin"]).is_err());
}

#[test]
fn cpus_pick_threads() {
    let config = Config::from_cli(&cli(&["--cpus", "1-2"]), &FOUR).unwrap();
    assert_eq!((config.threads, config.cpus), (2, vec![1, 2]));
}

/// Each refused flag, the setting the error names, and its whole message.
#[test]
fn bad_settings_name_themselves() {
    use Setting::*;
    let tls = ["--tls-cert", "c", "--tls-key", "k"];
    let with_tls = |more: &[&'static str]| [&tls[..], more].concat();
    let cases: Vec<(Vec<&str>, Setting, &str)> = vec![
        (
            vec!["--threads", "0"],
            Threads,
            "--threads: must be at least 1",
        ),
        (
            vec!["--pin", "--threads", "5"],
            Threads,
            "--threads: 5 threads but this process may use only 4 CPUs to pin them to (drop --pin to run more)",
        ),
        (
            vec!["--cpus", "7"],
            Cpus,
            "--cpus: CPU 7 is not one this process may use (allowed: [0, 1, 2, 3])",
        ),
        (
            vec!["--cpus", "2-1"],
            Cpus,
            "--cpus: '2-1' is not a CPU list (example: 0-3,6)",
        ),
        (vec!["--cpus", "1,1"], Cpus, "--cpus: CPU 1 is listed twice"),
        (
            vec!["--threads", "3", "--cpus", "0-1"],
            Cpus,
            "--cpus: lists 2 CPUs but --threads is 3",
        ),
        (
            vec!["--shards", "1", "-t", "2"],
            Shards,
            "--shards: 1 is fewer than the 2 threads",
        ),
        (
            vec!["-m", "lots"],
            Memory,
            "--memory: 'lots' is not a size (examples: 1048576, 512k, 1m, 2g)",
        ),
        (vec!["-m", "0"], Memory, "--memory: must be more than 0"),
        (
            vec!["-m", "99999999999999999"],
            Memory,
            "--memory: too large",
        ),
        (
            vec!["-m", "1", "--shards", "4"],
            Memory,
            "--memory: 1 MiB over 4 shards leaves 256 KiB per shard, less than one slab page (1024 KiB)",
        ),
        (
            vec![
                "-m",
                "300000",
                "--slab-page-size",
                "1g",
                "-t",
                "1",
                "--shards",
                "1",
            ],
            Memory,
            "--memory: memory limit 314572800000 in pages of 1073741824 bytes is too large for one shard; use larger pages or more shards",
        ),
        (
            vec!["-I", "12q"],
            MaxItemSize,
            "--max-item-size: '12q' is not a size (examples: 1048576, 512k, 1m, 2g)",
        ),
        (
            vec!["-I", "512"],
            MaxItemSize,
            "--max-item-size: must be at least 1k",
        ),
        (
            vec!["-I", "1k", "--slab-min-chunk", "2000"],
            MaxItemSize,
            "--max-item-size: max item size 1024 is below the smallest chunk (40 bytes of header plus 2000 of data)",
        ),
        (
            vec!["--output-budget", "1k"],
            OutputBudget,
            "--output-budget: must be at least 4k",
        ),
        (
            vec!["--output-budget", "lots"],
            OutputBudget,
            "--output-budget: 'lots' is not a size (examples: 1048576, 512k, 1m, 2g)",
        ),
        (
            vec!["-c", "0"],
            MaxConnections,
            "--max-connections: must be at least 1",
        ),
        (
            vec!["--ttl-tick", "soon"],
            TtlTick,
            "--ttl-tick: 'soon' is not a duration (expected number at 0)",
        ),
        (
            vec!["--ttl-tick", "0s"],
            TtlTick,
            "--ttl-tick: must be more than 0",
        ),
        (vec!["--spin", "2ms"], Spin, "--spin: must be at most 1ms"),
        (
            vec!["--spin", "x"],
            Spin,
            "--spin: 'x' is not a duration (expected number at 0)",
        ),
        (
            vec!["--idle-timeout", "1500ms"],
            IdleTimeout,
            "--idle-timeout: must be whole seconds (or 0 for none)",
        ),
        (
            vec!["--idle-timeout", "idle"],
            IdleTimeout,
            "--idle-timeout: 'idle' is not a duration (expected number at 0)",
        ),
        (
            vec!["--listen", "nowhere"],
            Listen,
            "--listen: 'nowhere' is not an IP address or IP:PORT",
        ),
        (
            vec!["--slab-growth-factor", "1.0"],
            SlabGrowthFactor,
            "--slab-growth-factor: must be above 1.0 and at most 4.0",
        ),
        (
            vec!["--slab-growth-factor", "1.001"],
            SlabGrowthFactor,
            "--slab-growth-factor: slab growth factor 1.001 gives 257 classes; at most 255 are supported",
        ),
        (
            vec!["--slab-min-chunk", "4"],
            SlabMinChunk,
            "--slab-min-chunk: must be between 8 and 65536 bytes",
        ),
        (
            vec![
                "--slab-min-chunk",
                "40000",
                "--slab-page-size",
                "64k",
                "-I",
                "64k",
            ],
            SlabMinChunk,
            "--slab-min-chunk: slab minimum chunk 40000 must be between 1 and half a page (32768)",
        ),
        (
            vec!["--slab-page-size", "512k"],
            SlabPageSize,
            "--slab-page-size: 524288 bytes is smaller than --max-item-size (1048576 bytes)",
        ),
        (
            vec!["--slab-page-size", "2g", "-m", "8192"],
            SlabPageSize,
            "--slab-page-size: slab page size 2147483648 must be between 1 KiB and 1 GiB",
        ),
        (
            vec!["-p", "7000", "--shard-aware-port", "7000"],
            ShardAwarePort,
            "--shard-aware-port: 7000 is the listen port; it needs a port of its own",
        ),
        (
            with_tls(&[
                "--tls-listen",
                "127.0.0.1:7001",
                "--shard-aware-port",
                "7001",
            ]),
            ShardAwarePort,
            "--shard-aware-port: 7001 is the --tls-listen port; it needs a port of its own",
        ),
        (
            vec!["--runtime", "work-stealing", "--port-per-core", "7100"],
            PortPerCore,
            "--port-per-core: needs --runtime thread-per-core (under work-stealing every \
             thread serves every key, so no port belongs to one)",
        ),
        (
            vec!["-t", "3", "--port-per-core", "65534"],
            PortPerCore,
            "--port-per-core: 3 threads from port 65534 need ports up to 65536; the last port is 65535",
        ),
        (
            vec!["-t", "4", "-p", "7102", "--port-per-core", "7100"],
            PortPerCore,
            "--port-per-core: ports 7100-7103 (one per thread) include the listen port 7102",
        ),
        (
            vec![
                "-t",
                "2",
                "--shard-aware-port",
                "7100",
                "--port-per-core",
                "7099",
            ],
            PortPerCore,
            "--port-per-core: ports 7099-7100 (one per thread) include --shard-aware-port 7100",
        ),
        (
            vec!["--tls-cert", "c.pem"],
            TlsCert,
            "--tls-cert: needs --tls-key as well",
        ),
        (
            vec!["--tls-key", "k.pem"],
            TlsKey,
            "--tls-key: needs --tls-cert as well",
        ),
        (
            vec!["--tls-ca", "ca.pem"],
            TlsCa,
            "--tls-ca: needs --tls-cert and --tls-key",
        ),
        (
            vec!["--tls-listen", "127.0.0.1:1"],
            TlsListen,
            "--tls-listen: needs --tls-cert and --tls-key",
        ),
        (
            with_tls(&["--tls-listen", "x"]),
            TlsListen,
            "--tls-listen: 'x' is not IP:PORT",
        ),
        (
            with_tls(&["--tls-listen", "127.0.0.1:11211"]),
            TlsListen,
            "--tls-listen: 127.0.0.1:11211 is --listen already",
        ),
        (
            vec!["--tls-handshake-timeout", "0s"],
            TlsHandshakeTimeout,
            "--tls-handshake-timeout: must be more than 0",
        ),
        (
            vec!["--tls-handshake-timeout", "zz"],
            TlsHandshakeTimeout,
            "--tls-handshake-timeout: 'zz' is not a duration (expected number at 0)",
        ),
    ];
    for (args, setting, message) in cases {
        let err = Config::from_cli(&cli(&args), &FOUR).unwrap_err();
        assert_eq!(err.setting(), Some(setting), "{args:?}: {err}");
        assert_eq!(err.to_string(), message, "{args:?}");
    }
    assert!(Cli::try_parse_from(["corecache", "--runtime", "fibers"]).is_err());
    let err = Config::from_cli(&cli(&["--config", "/nonexistent.toml"]), &FOUR).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--config /nonexistent.toml: No such file or directory (os error 2)"
    );
    let err = Config::from_toml("thread = 2", &cli(&[]), &FOUR).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config: unknown field `thread`"),
        "{err}"
    );
}

/// A value the file gave is named by its key in the file, even where a
/// check of several settings together refuses it.
#[test]
fn bad_file_settings_name_their_key() {
    let cases = [
        ("threads = 0", "threads (config file): must be at least 1"),
        (
            "memory = \"lots\"",
            "memory (config file): 'lots' is not a size (examples: 1048576, 512k, 1m, 2g)",
        ),
        (
            "listen = \"nowhere\"",
            "listen (config file): 'nowhere' is not an IP address or IP:PORT",
        ),
        (
            "threads = 3\ncpus = \"0-1\"",
            "cpus (config file): lists 2 CPUs but --threads is 3",
        ),
        (
            "tls-cert = \"c\"",
            "tls-cert (config file): needs --tls-key as well",
        ),
        (
            "memory = 1\nshards = 4",
            "memory (config file): 1 MiB over 4 shards leaves 256 KiB per shard, less than one slab page (1024 KiB)",
        ),
        (
            "slab-growth-factor = 1.001",
            "slab-growth-factor (config file): slab growth factor 1.001 gives 257 classes; at most 255 are supported",
        ),
        ("spin = \"5ms\"", "spin (config file): must be at most 1ms"),
    ];
    for (text, message) in cases {
        let err = Config::from_toml(text, &cli(&[]), &FOUR).unwrap_err();
        assert_eq!(err.to_string(), message, "{text:?}");
    }
    // The flag wins over the file, and so names itself.
    let err = Config::from_toml("spin = \"5ms\"", &cli(&["--spin", "3ms"]), &FOUR).unwrap_err();
    assert_eq!(err.to_string(), "--spin: must be at most 1ms");
    // A setting neither layer gave, refused with another, is named by its
    // flag: the flag is how to change it.
    let err = Config::from_cli(&cli(&["--shards", "100"]), &FOUR).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--memory: 64 MiB over 100 shards leaves 655 KiB per shard, less than one slab page (1024 KiB)"
    );
}

/// Every setting an error can name is a flag, under the same name.
#[test]
fn every_setting_is_a_flag() {
    use clap::CommandFactory;
    let command = Cli::command();
    for setting in Setting::ALL {
        assert!(
            command
                .get_arguments()
                .any(|arg| arg.get_long() == Some(setting.key())),
            "no --{}",
            setting.key()
        );
    }
}

#[test]
fn tls_takes_listen_unless_it_has_its_own() {
    let tls = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
    let alone = Config::from_cli(&cli(&tls), &FOUR).unwrap();
    assert_eq!(alone.plaintext_listen(), None);
    assert_eq!(alone.tls_listen(), Some(alone.listen));
    let beside = [&tls[..], &["--tls-listen", "127.0.0.1:11212"]].concat();
    let beside = Config::from_cli(&cli(&beside), &FOUR).unwrap();
    assert_eq!(beside.plaintext_listen(), Some(beside.listen));
    assert_eq!(
        beside.tls_listen(),
        Some("127.0.0.1:11212".parse().unwrap())
    );
    let off = Config::from_cli(&cli(&[]), &FOUR).unwrap();
    assert_eq!(
        (off.plaintext_listen(), off.tls_listen()),
        (Some(off.listen), None)
    );
    let text = "tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\ntls-ca = \"ca.pem\"\n";
    let file = Config::from_toml(text, &cli(&[]), &FOUR).unwrap();
    let file = file.tls.unwrap();
    assert_eq!(file.ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(file.cert, PathBuf::from("c.pem"));
}

/// `--port-per-core` from the flag or the file: thread i's port is the
/// base plus i; 0 is off.
#[test]
fn port_per_core_gives_each_thread_a_port() {
    let config = Config::from_cli(&cli(&["-t", "3", "--port-per-core", "7100"]), &FOUR).unwrap();
    assert_eq!(config.per_core_ports(), [7100, 7101, 7102]);
    let file = Config::from_toml("port-per-core = 9000\nthreads = 2", &cli(&[]), &FOUR).unwrap();
    assert_eq!(file.per_core_ports(), [9000, 9001]);
    let off = Config::from_cli(&cli(&["--port-per-core", "0"]), &FOUR).unwrap();
    assert!(off.per_core_ports().is_empty());
    // The last port may be 65535 itself.
    let top = Config::from_cli(&cli(&["-t", "2", "--port-per-core", "65534"]), &FOUR).unwrap();
    assert_eq!(top.per_core_ports(), [65534, 65535]);
    let err = Config::from_toml(
        "port-per-core = 9000\nruntime = \"work-stealing\"",
        &cli(&[]),
        &FOUR,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("port-per-core (config file): needs --runtime thread-per-core"),
        "{err}"
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1m"), Ok(MIB));
    assert_eq!(parse_size("512k"), Ok(512 * 1024));
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("m").is_err());
    assert_eq!(parse_cpu_list("0-2,5"), Ok(vec![0, 1, 2, 5]));
}
