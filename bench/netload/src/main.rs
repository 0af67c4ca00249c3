//! `fata-netload`: load generators for Fata's benchmarks.
//!
//! - `udp-rr SERVER`: UDP request-response against an echo server, `--window` requests in flight;
//!   prints answered requests per second.
//! - `dns SERVER --queries FILE`: DNS queries from a dnsperf-style file (`NAME TYPE` per line),
//!   `--window` in flight over `--sockets` sockets, optionally paced at `--rate` queries per second;
//!   prints answered queries per second, the response codes and the latency (mean and 99th
//!   percentile, from each query's send to its answer, matched by ID) and the longest gap between
//!   two answers (a migration's downtime as the client sees it). It exists because dnsperf
//!   saturates its own core near 165k queries per second on this machine, below what the servers
//!   under test answer; it spins on non-blocking sockets instead of sleeping, so it needs a CPU of
//!   its own.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generators for Fata's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// UDP request-response rate against an echo server.
    UdpRr {
        /// The echo server, as ADDR:PORT.
        server: SocketAddr,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        window: u32,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Bytes per request (at least 8).
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// DNS queries per second against a server.
    Dns {
        /// The DNS server, as ADDR:PORT.
        server: SocketAddr,
        /// The queries, one `NAME TYPE` per line (dnsperf's format).
        #[arg(long)]
        queries: PathBuf,
        /// Queries in flight at once, over all sockets.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Sockets (source ports) to spread the queries over.
        #[arg(long, default_value_t = 4)]
        sockets: usize,
        /// Offered rate in queries per second (0: as fast as answers come back).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn main() -> std::io::Result<()> {
    match Cli::parse().command {
        Command::UdpRr {
            server,
            window,
            seconds,
            size,
        } => udp_rr(server, window, seconds, size),
        Command::Dns {
            server,
            queries,
            window,
            sockets,
            rate,
            seconds,
        } => dns(server, &queries, window, sockets.max(1), rate, seconds),
    }
}

fn udp_rr(server: SocketAddr, window: u32, seconds: f64, size: usize) -> std::io::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut request = vec![0u8; size.max(8)];
    let mut answer = vec![0u8; request.len() + 64];
    let mut next: u64 = 0;
    let mut answered: u64 = 0;
    let mut refills: u64 = 0;
    let send = |seq: u64, request: &mut Vec<u8>| {
        request[..8].copy_from_slice(&seq.to_le_bytes());
        socket.send(request)
    };
    for _ in 0..window {
        send(next, &mut request)?;
        next += 1;
    }
    let start = Instant::now();
    let run = Duration::from_secs_f64(seconds);
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
                // A lost datagram: refill the window rather than wait forever.
                refills += 1;
                for _ in 0..window {
                    send(next, &mut request)?;
                    next += 1;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "udp-rr {server}: {:.0} requests/s ({answered} answered in {took:.2} s, window {window}, {} bytes, {refills} refills)",
        answered as f64 / took,
        request.len()
    );
    Ok(())
}

/// Encodes `NAME TYPE` as a query with EDNS(0) (payload 1232), as dnsperf sends them.
fn encode_query(line: &str) -> Option<Vec<u8>> {
    let mut words = line.split_whitespace();
    let (name, rtype) = (words.next()?, words.next().unwrap_or("A"));
    let qtype: u16 = match rtype.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "CAA" => 257,
        other => other.strip_prefix("TYPE")?.parse().ok()?,
    };
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(u8::try_from(label.len()).ok().filter(|&n| n < 64)?);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    Some(q)
}

fn dns(
    server: SocketAddr,
    queries: &PathBuf,
    window: usize,
    socket_count: usize,
    rate: u64,
    seconds: f64,
) -> std::io::Result<()> {
    let text = std::fs::read_to_string(queries)?;
    let mut messages: Vec<Vec<u8>> = text.lines().filter_map(encode_query).collect();
    let count = messages.len();
    if messages.is_empty() {
        return Err(std::io::Error::other("no queries in the file"));
    }
    let sockets: Vec<UdpSocket> = (0..socket_count)
        .map(|_| {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect(server)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<std::io::Result<_>>()?;
    let per_socket = window.div_ceil(socket_count).max(1);
    let mut in_flight = vec![0usize; socket_count];
    let mut last_answer = vec![Instant::now(); socket_count];
    let mut rcodes: BTreeMap<u8, u64> = BTreeMap::new();
    let (mut sent, mut answered, mut lost) = (0u64, 0u64, 0u64);
    let mut next_query = 0usize;
    let mut id: u16 = 0;
    let mut buf = [0u8; 4096];
    // When each ID was last sent, and answer latencies in microsecond buckets (the last bucket
    // holds everything from 100 ms on).
    let mut sent_at = vec![Instant::now(); 1 << 16];
    let mut latency_us = vec![0u64; 100_001];
    // The longest silence between two answers and when it began: a migration's downtime, seen
    // from the client.
    let mut previous_answer: Option<Instant> = None;
    let mut longest_gap = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let run = Duration::from_secs_f64(seconds);
    while start.elapsed() < run {
        for (i, socket) in sockets.iter().enumerate() {
            while in_flight[i] < per_socket {
                if rate > 0 && sent as f64 >= start.elapsed().as_secs_f64() * rate as f64 {
                    break;
                }
                let message = &mut messages[next_query];
                next_query = (next_query + 1) % count;
                id = id.wrapping_add(1);
                message[..2].copy_from_slice(&id.to_be_bytes());
                match socket.send(message) {
                    Ok(_) => {
                        sent_at[usize::from(id)] = Instant::now();
                        sent += 1;
                        in_flight[i] += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                }
            }
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) if n >= 12 => {
                        answered += 1;
                        in_flight[i] = in_flight[i].saturating_sub(1);
                        let now = Instant::now();
                        last_answer[i] = now;
                        if let Some(previous) = previous_answer.replace(now)
                            && now - previous > longest_gap.0
                        {
                            longest_gap = (now - previous, previous - start);
                        }
                        *rcodes.entry(buf[3] & 0xf).or_default() += 1;
                        let answer_id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                        let us = sent_at[answer_id].elapsed().as_micros();
                        let bucket = (us as usize).min(latency_us.len() - 1);
                        latency_us[bucket] += 1;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                }
            }
            // Queries unanswered for 200 ms are counted lost and their slots reused.
            if in_flight[i] > 0 && last_answer[i].elapsed() > Duration::from_millis(200) {
                lost += in_flight[i] as u64;
                in_flight[i] = 0;
                last_answer[i] = Instant::now();
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    let names = |code: &u8| match code {
        0 => "NOERROR".to_string(),
        3 => "NXDOMAIN".to_string(),
        5 => "REFUSED".to_string(),
        other => format!("rcode{other}"),
    };
    let codes: Vec<String> = rcodes
        .iter()
        .map(|(c, n)| format!("{} {n}", names(c)))
        .collect();
    let (mean, p99) = mean_and_p99(&latency_us);
    println!(
        "dns {server}: {:.0} queries/s answered ({answered} of {sent} sent in {took:.2} s, {lost} lost; {}); latency mean {mean:.0} us, p99 {p99} us; longest gap between answers {:.3} ms, from {:.3} s",
        answered as f64 / took,
        codes.join(", "),
        longest_gap.0.as_secs_f64() * 1e3,
        longest_gap.1.as_secs_f64(),
    );
    Ok(())
}

/// The mean and 99th percentile of a histogram with one bucket per microsecond.
fn mean_and_p99(histogram: &[u64]) -> (f64, usize) {
    let count: u64 = histogram.iter().sum();
    if count == 0 {
        return (0.0, 0);
    }
    let total: u64 = histogram
        .iter()
        .enumerate()
        .map(|(us, n)| us as u64 * n)
        .sum();
    let mut seen = 0;
    let p99 = histogram
        .iter()
        .position(|n| {
            seen += n;
            seen * 100 >= count * 99
        })
        .unwrap_or(histogram.len() - 1);
    (total as f64 / count as f64, p99)
}
