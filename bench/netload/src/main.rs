//! `fata-netload`: UDP request-response load for bench/net.
//!
//! Keeps `--window` requests in flight against a UDP echo server for `--seconds`, each answered
//! request replaced by a new one, and prints the answered requests per second. Requests carry a
//! sequence number so stale answers are told apart; a window that goes quiet for 20 ms is refilled,
//! so a lost datagram costs time, not the run.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(about = "UDP request-response rate against an echo server")]
struct Args {
    /// The echo server, as ADDR:PORT.
    server: SocketAddr,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    window: u32,
    /// How long to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Bytes per request (at least 8).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(args.server)?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut request = vec![0u8; args.size.max(8)];
    let mut answer = vec![0u8; request.len() + 64];
    let mut next: u64 = 0;
    let mut answered: u64 = 0;
    let mut refills: u64 = 0;
    let send = |seq: u64, request: &mut Vec<u8>| {
        request[..8].copy_from_slice(&seq.to_le_bytes());
        socket.send(request)
    };
    for _ in 0..args.window {
        send(next, &mut request)?;
        next += 1;
    }
    let start = Instant::now();
    let run = Duration::from_secs_f64(args.seconds);
    while start.elapsed() < run {
        match socket.recv(&mut answer) {
            Ok(n) if n == request.len() => {
                answered += 1;
                send(next, &mut request)?;
                next += 1;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                refills += 1;
                for _ in 0..args.window {
                    send(next, &mut request)?;
                    next += 1;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "udp-rr {}: {:.0} requests/s ({answered} answered in {took:.2} s, window {}, {} bytes, {refills} refills)",
        args.server,
        answered as f64 / took,
        args.window,
        request.len()
    );
    Ok(())
}
