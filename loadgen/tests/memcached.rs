//! loadgen against a real memcached: the reference server must pass strict
//! verification with no errors. Needs `memcached` on PATH (or `$MEMCACHED`);
//! fails, rather than skips, when it is missing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_memcached() -> (Server, std::net::SocketAddr) {
    let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args(["-u", "nobody", "-U", "0", "-l", "127.0.0.1", "-t", "1", "-m", "64", "-p"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs memcached ({bin:?}: {e}); install it (apt-get install memcached) or set $MEMCACHED")
        });
    let server = Server(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "memcached did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    assert!(r.requests > 1000, "{r}");
    assert_eq!(r.hit_ratio, 1.0, "{r}");
}
