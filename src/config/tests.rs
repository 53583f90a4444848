//! Unit tests of the configuration: flags, file, defaults, and the errors
//! that name a bad setting.

use super::*;

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

#[test]
fn cpus_pick_threads() {
    let config = Config::from_cli(&cli(&["--cpus", "1-2"]), &FOUR).unwrap();
    assert_eq!((config.threads, config.cpus), (2, vec![1, 2]));
}

#[test]
fn bad_settings_name_themselves() {
    let cases: &[(&[&str], &str)] = &[
        (&["--threads", "0"], "--threads"),
        (&["--cpus", "7"], "--cpus"),
        (&["--cpus", "2-1"], "--cpus"),
        (&["--threads", "3", "--cpus", "0-1"], "--cpus"),
        (&["--shards", "1", "-t", "2"], "--shards"),
        (&["-m", "lots"], "--memory"),
        (&["-m", "1", "--shards", "4"], "--memory"),
        (&["-I", "12q"], "--max-item-size"),
        (&["--ttl-tick", "soon"], "--ttl-tick"),
        (&["--listen", "nowhere"], "--listen"),
        (&["--slab-growth-factor", "1.0"], "--slab-growth-factor"),
        (&["--slab-page-size", "512k"], "--slab-page-size"),
        (&["--slab-growth-factor", "1.001"], "--slab-growth-factor"),
        (
            &["-p", "7000", "--shard-aware-port", "7000"],
            "--shard-aware-port",
        ),
        (
            &[
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-listen",
                "127.0.0.1:7001",
                "--shard-aware-port",
                "7001",
            ],
            "--shard-aware-port",
        ),
        (&["--tls-cert", "c.pem"], "--tls-cert"),
        (&["--tls-key", "k.pem"], "--tls-key"),
        (&["--tls-ca", "ca.pem"], "--tls-ca"),
        (&["--tls-listen", "127.0.0.1:1"], "--tls-listen"),
        (
            &["--tls-cert", "c", "--tls-key", "k", "--tls-listen", "x"],
            "--tls-listen",
        ),
        (
            &[
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-listen",
                "127.0.0.1:11211",
            ],
            "--tls-listen",
        ),
        (
            &["--tls-handshake-timeout", "0s"],
            "--tls-handshake-timeout",
        ),
        (&["--idle-timeout", "1500ms"], "--idle-timeout"),
        (&["--idle-timeout", "idle"], "--idle-timeout"),
    ];
    for (args, setting) in cases {
        let err = Config::from_cli(&cli(args), &FOUR).unwrap_err();
        assert_eq!(err.setting, *setting, "{args:?}: {err}");
    }
    assert!(Cli::try_parse_from(["corecache", "--runtime", "fibers"]).is_err());
    let err = Config::from_toml("thread = 2", &cli(&[]), &FOUR).unwrap_err();
    assert!(err.reason.contains("unknown field"), "{err}");
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

#[test]
fn sizes() {
    assert_eq!(parse_size("1m"), Ok(MIB));
    assert_eq!(parse_size("512k"), Ok(512 * 1024));
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("m").is_err());
    assert_eq!(parse_cpu_list("0-2,5"), Ok(vec![0, 1, 2, 5]));
}
