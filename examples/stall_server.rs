//! A stall server for the load benchmark (bench/run.sh): answers `hello world\n`, but
//! freezes every answer for STALL of each PERIOD (from the first request, starting at
//! OFFSET). Prints `127.0.0.1:PORT` on stdout, exits after MAX seconds.
//!
//! `cargo run --release --example stall_server -- [PERIOD=5s] [STALL=1s] [OFFSET=2s] [MAX=120]`

#[path = "../tests/it/common/servers.rs"]
mod servers;

use std::io::Write;
use std::time::Duration;

fn secs(arg: Option<String>, default: f64) -> Duration {
    let v = arg
        .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(default);
    Duration::from_secs_f64(v)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let period = secs(args.next(), 5.0);
    let stall = secs(args.next(), 1.0);
    let offset = secs(args.next(), 2.0);
    let max = secs(args.next(), 120.0);
    let server = servers::spawn(servers::Behavior::Stall {
        period,
        stall,
        offset,
    });
    println!("{}", server.addr);
    let _ = std::io::stdout().flush();
    std::thread::sleep(max);
    eprintln!("stall_server: {} requests", server.hits());
}
