//! Helpers shared by loadgen's integration tests: serving a stand-in
//! server from a thread, and running the loadgen binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;

/// Serves `listener` from a thread of its own (a current-thread tokio
/// runtime), running `handle` for every accepted connection with its
/// peer address.
pub fn serve<F, Fut>(listener: std::net::TcpListener, handle: F)
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (sock, peer) = listener.accept().await.unwrap();
                tokio::spawn(handle(sock, peer));
            }
        });
    });
}

/// Runs the loadgen binary against `server` with `args` and `--json`:
/// its exit code, the JSON (`Null` when none was written) and its stderr.
pub fn run_loadgen(server: SocketAddr, args: &[&str]) -> (i32, serde_json::Value, String) {
    let json = std::env::temp_dir().join(format!(
        "loadgen-test-{}-{}.json",
        std::process::id(),
        server.port()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--server", &server.to_string(), "--json"])
        .arg(&json)
        .args(args)
        .output()
        .expect("running loadgen");
    let value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_file(&json);
    (
        out.status.code().unwrap_or(-1),
        value,
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
