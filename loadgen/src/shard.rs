//! `--shard-aware`: which server core owns a key, from the rule the server
//! publishes, and connections that land on a chosen core.
//!
//! A corecache started with `--shard-aware-port P` serves a connection
//! accepted on P on core `peer_port % threads`, and `stats settings`
//! publishes how it maps keys to cores:
//!
//! ```text
//! STAT num_threads N
//! STAT shard_aware_port P          (0 when off)
//! STAT shard_hash xxh3_64          xxh3, 64 bits, seed 0, of the key bytes
//! STAT shard_count S
//! STAT shard_select hi32_mul       shard = ((hash >> 32) * S) >> 32
//! STAT shard_owner modulo          core = shard % N
//! ```
//!
//! loadgen knows the server only through the wire: it reads these lines,
//! refuses a rule it does not implement, and routes with [`ShardMap`]. For
//! each connection slot it opens one socket per core, bound before
//! connecting to a local port `p` with `p % N == core` ([`connect_to_core`]).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use xxhash_rust::xxh3::xxh3_64;

/// The server's published key-to-core rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardMap {
    /// Server cores (`num_threads`).
    pub threads: usize,
    /// Shards (`shard_count`).
    pub shards: u64,
    /// The shard-aware port (`shard_aware_port`).
    pub port: u16,
}

impl ShardMap {
    /// Reads the rule from `stats settings` lines (`name value` pairs),
    /// failing on anything but the one rule loadgen implements.
    pub fn from_settings(settings: &[(String, String)]) -> anyhow::Result<ShardMap> {
        let map = ShardMap::rule_from_settings(settings)?;
        if map.port == 0 {
            bail!("the server has no shard-aware port (start it with --shard-aware-port)");
        }
        Ok(map)
    }

    /// [`ShardMap::from_settings`] without needing a shard-aware port
    /// (`port` 0 then): enough to know which core owns a key.
    pub fn rule_from_settings(settings: &[(String, String)]) -> anyhow::Result<ShardMap> {
        let get = |name: &str| -> anyhow::Result<&str> {
            settings
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .with_context(|| format!("the server's stats settings has no {name}"))
        };
        let number = |name: &str| -> anyhow::Result<u64> {
            get(name)?
                .parse()
                .with_context(|| format!("stats settings {name}: not a number"))
        };
        for (name, want) in [
            ("shard_hash", "xxh3_64"),
            ("shard_select", "hi32_mul"),
            ("shard_owner", "modulo"),
        ] {
            let got = get(name)?;
            if got != want {
                bail!("stats settings {name} is {got:?}; loadgen routes only by {want:?}");
            }
        }
        let port = number("shard_aware_port")?;
        let map = ShardMap {
            threads: number("num_threads")? as usize,
            shards: number("shard_count")?,
            port: u16::try_from(port).context("stats settings shard_aware_port")?,
        };
        if map.threads == 0 || map.shards == 0 || map.threads > 1024 {
            bail!("stats settings: {map:?} is not a usable shard map");
        }
        Ok(map)
    }

    /// Asks the server at `addr` (`stats settings`) for its rule.
    pub fn fetch(addr: SocketAddr) -> anyhow::Result<ShardMap> {
        match read_settings(addr)? {
            Some(settings) => ShardMap::from_settings(&settings),
            None => bail!("{addr} does not answer stats settings"),
        }
    }

    /// Asks the server at `addr` for its rule, port or not: `None` when it
    /// publishes none (memcached), or says no core owns a key
    /// (`shard_owner any`: corecache's work-stealing runtime).
    pub fn fetch_rule(addr: SocketAddr) -> anyhow::Result<Option<ShardMap>> {
        let Some(settings) = read_settings(addr)? else {
            return Ok(None);
        };
        let has = |name: &str, value: Option<&str>| {
            settings
                .iter()
                .any(|(k, v)| k == name && value.is_none_or(|want| v == want))
        };
        if !has("shard_hash", None) || has("shard_owner", Some("any")) {
            return Ok(None);
        }
        ShardMap::rule_from_settings(&settings).map(Some)
    }
}

/// The server's `stats settings`, as name/value pairs; `None` when it
/// answers `ERROR`.
fn read_settings(addr: SocketAddr) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr} for stats settings"))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(b"stats settings\r\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(b"END\r\n") {
        if reply.ends_with(b"ERROR\r\n") {
            return Ok(None);
        }
        let n = c.read(&mut buf).context("reading stats settings")?;
        if n == 0 {
            bail!("{addr} closed the connection during stats settings");
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(Some(
        String::from_utf8_lossy(&reply)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.strip_prefix("STAT ")?.split_once(' ')?;
                Some((k.to_string(), v.trim().to_string()))
            })
            .collect(),
    ))
}

impl ShardMap {
    /// The shard of `key`: `((xxh3_64(key) >> 32) * S) >> 32`.
    #[inline]
    pub fn shard(&self, key: &[u8]) -> u64 {
        ((xxh3_64(key) >> 32) * self.shards) >> 32
    }

    /// The core that owns `key`: its shard modulo the cores.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> usize {
        (self.shard(key) % self.threads as u64) as usize
    }
}

/// Connects to `server` from a local port `p` with `p % cores == core`,
/// so a shard-aware listener hands the connection to `core`. Candidates
/// start at `*next` (advanced past the port used, so successive calls do
/// not retry the same ports) and go up by `cores`; one in use
/// (`EADDRINUSE` at bind, `EADDRNOTAVAIL` at connect) is skipped.
pub fn connect_to_core(
    server: SocketAddr,
    cores: usize,
    core: usize,
    next: &mut u32,
) -> anyhow::Result<TcpStream> {
    let cores = cores as u32;
    let local_ip = match server {
        SocketAddr::V4(_) => std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut port = *next + (core as u32 + cores - *next % cores) % cores;
    let mut tries = 0;
    while port <= u16::MAX as u32 {
        let socket = Socket::new(
            Domain::for_address(server),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        // A port this run used before may still hold a TIME_WAIT
        // connection to another address: that must not block the bind.
        socket.set_reuse_address(true)?;
        let local = SockAddr::from(SocketAddr::new(local_ip, port as u16));
        let taken = |e: &std::io::Error| {
            matches!(
                e.raw_os_error(),
                Some(libc::EADDRINUSE) | Some(libc::EADDRNOTAVAIL)
            )
        };
        match socket
            .bind(&local)
            .and_then(|()| socket.connect(&SockAddr::from(server)))
        {
            Ok(()) => {
                *next = port + 1;
                return Ok(socket.into());
            }
            Err(e) if taken(&e) && tries < 10_000 => {
                tries += 1;
                port += cores;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("connecting to {server} from local port {port} (core {core})")
                });
            }
        }
    }
    bail!("no free local port for core {core} of {cores}")
}

/// The first local port candidates are tried from: a per-process offset
/// into 20000..60000, so two loadgens started together rarely collide.
pub fn first_port() -> u32 {
    20_000 + (std::process::id() % 1000) * 40
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn published(threads: &str, shards: &str) -> Vec<(String, String)> {
        settings(&[
            ("num_threads", threads),
            ("shard_aware_port", "7000"),
            ("shard_hash", "xxh3_64"),
            ("shard_count", shards),
            ("shard_select", "hi32_mul"),
            ("shard_owner", "modulo"),
        ])
    }

    #[test]
    fn the_hash_is_xxh3_64_with_seed_0() {
        // XXH3_64bits of the empty input, from the reference implementation.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn routes_by_the_published_rule() {
        let map = ShardMap::from_settings(&published("2", "8")).unwrap();
        assert_eq!(
            map,
            ShardMap {
                threads: 2,
                shards: 8,
                port: 7000
            }
        );
        // Hashes from the reference implementation (the C library behind
        // Python's `xxhash`); with 8 shards, hi32_mul keeps the top 3 bits.
        for (key, hash, shard, core) in [
            (&b"key:0"[..], 0xb464_ee7b_6334_4e80u64, 5u64, 1usize),
            (b"key:2", 0xcccb_71f9_abe5_4869, 6, 0),
            (b"key:3", 0x3fea_df58_1ba2_b548, 1, 1),
            (b"key:11", 0x19f6_7b87_3df5_cf17, 0, 0),
        ] {
            assert_eq!(xxh3_64(key), hash, "{}", String::from_utf8_lossy(key));
            assert_eq!(map.shard(key), shard);
            assert_eq!(map.owner(key), core);
        }
        // Three cores over 16 shards (the top 4 bits), owner = shard % 3.
        let map = ShardMap::from_settings(&published("3", "16")).unwrap();
        for (key, shard, core) in [
            (&b"key:2"[..], 12, 0),
            (b"key:10", 10, 1),
            (b"key:7", 15, 0),
            (b"key:0", 11, 2),
        ] {
            assert_eq!((map.shard(key), map.owner(key)), (shard, core));
        }
    }

    #[test]
    fn refuses_rules_it_does_not_implement() {
        let mut s = published("2", "8");
        s[2].1 = "crc32".into();
        let e = ShardMap::from_settings(&s).unwrap_err().to_string();
        assert!(e.contains("shard_hash") && e.contains("crc32"), "{e}");
        let mut s = published("2", "8");
        s[1].1 = "0".into();
        assert!(ShardMap::from_settings(&s).is_err(), "port 0 is off");
        let s = settings(&[("num_threads", "2")]);
        let e = ShardMap::from_settings(&s).unwrap_err().to_string();
        assert!(e.contains("shard_hash"), "{e}");
    }

    #[test]
    fn local_ports_land_on_the_core() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let mut next = first_port();
        for core in [0, 1, 2, 1, 0] {
            let c = connect_to_core(server, 3, core, &mut next).unwrap();
            let local = c.local_addr().unwrap().port() as usize;
            assert_eq!(local % 3, core);
            let (_, peer) = listener.accept().unwrap();
            assert_eq!(peer.port() as usize, local);
        }
        // A port in use is skipped for the next one of the same core.
        let taken = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = taken.local_addr().unwrap().port() as u32;
        let mut next = port;
        let c = connect_to_core(server, 1, 0, &mut next).unwrap();
        assert_ne!(c.local_addr().unwrap().port() as u32, port);
    }
}
