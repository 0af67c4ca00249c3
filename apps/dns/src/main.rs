//! An authoritative DNS server over UDP and TCP on port 53 (`--port N`).
//!
//! `fata run` compiles each master file given with `--zone FILE` (as many as there are zones to
//! serve) on the host and passes the compiled zones through the app's read-only `files` store,
//! where each `--zone` then names one.
//! Answers are memoized, in at most 8 MiB unless `--memo-bytes N` says otherwise, unless `--no-memo`
//! is given.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use fata::{Env, Error, Opt, Result, println};
use fata_dns::{Server, Transport, ZoneSet};
use fata_net::{Datagrams, Stack, TcpListener, TcpStream, Tuning, UdpSocket};

/// Datagrams taken per batch.
const BATCH: usize = 64;
/// A TCP client idle this long is disconnected (RFC 7766 suggests tens of seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The options dns takes, besides the network's.
const OPTIONS: &[Opt] = &[
    Opt::repeatable(
        "--zone",
        "FILE",
        "a master file to serve; one per zone, at least one",
    ),
    Opt::value("--port", "N", "the UDP and TCP port (default 53)"),
    Opt::value(
        "--memo-bytes",
        "N",
        "the most the answer cache holds (default 8 MiB)",
    ),
    Opt::flag("--no-memo", "answer every query afresh, without the cache"),
];

#[fata::main(options = [OPTIONS, fata_net::OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let port: u16 = env.arg("--port")?.unwrap_or(53);
    let cache_bytes = if env.flag("--no-memo") {
        0
    } else {
        env.arg("--memo-bytes")?
            .unwrap_or(fata_dns::DEFAULT_CACHE_BYTES)
    };
    let zone_keys: Vec<String> = env.arg_all("--zone")?;
    if zone_keys.is_empty() {
        return Err(Error::msg(
            "give each zone's master file with --zone FILE (repeat it for more zones)",
        ));
    }
    let files = env.take_kv("files")?;
    let mut zones: Option<ZoneSet> = None;
    for key in &zone_keys {
        let compiled = files
            .get(key)
            .map_err(|e| Error::msg(alloc::format!("reading zone {key:?}: {e}")))?;
        let set = ZoneSet::from_compiled(&compiled)?;
        let Some(all) = &mut zones else {
            zones = Some(set);
            continue;
        };
        for zone in set.zones() {
            all.insert(zone.clone()).map_err(|e| {
                Error::msg(alloc::format!("--zone {key}: zone {}: {e}", zone.apex()))
            })?;
        }
    }
    let zones = zones.expect("at least one --zone was read");
    let names: Vec<String> = zones
        .zones()
        .iter()
        .map(|z| alloc::format!("{}", z.apex()))
        .collect();
    let server = Rc::new(RefCell::new(Server::new(zones, cache_bytes)));

    // TCP sized for DNS: queries are small and few clients use TCP, so 8 connections ready to
    // accept with small buffers, instead of 32 with 64 KiB each way (4 MiB of a small
    // unikernel's RAM better spent on the zone and the response cache).
    let tuning = Tuning {
        tcp_rx_buffer: 4 * 1024,
        tcp_tx_buffer: 16 * 1024,
        tcp_backlog: 8,
        ..Tuning::default()
    };
    let stack = Stack::from_env_tuned(&mut env, tuning)?;
    let address = stack.wait_configured().await;
    let udp = UdpSocket::bind(&stack, port)?;
    let tcp = TcpListener::bind(&stack, port)?;
    println!(
        "dns: serving {} on {address} port {port} (UDP and TCP, memoization {})",
        names.join(" "),
        match cache_bytes {
            0 => String::from("off"),
            bytes => alloc::format!("in at most {} KiB", bytes / 1024),
        }
    );
    fata::spawn(serve_udp(udp, server.clone())).detach();
    loop {
        // A connection reset before it was accepted is not the server's problem.
        let Ok((stream, _)) = tcp.accept().await else {
            continue;
        };
        fata::spawn(serve_tcp(stream, server.clone())).detach();
    }
}

/// Answers datagrams in batches: every query waiting is taken at once and the answers leave
/// together (one `recvmmsg` and one `sendmmsg` per batch on unix host sockets).
async fn serve_udp(socket: UdpSocket, server: Rc<RefCell<Server>>) {
    let mut queries = Datagrams::new();
    let mut answers = Datagrams::new();
    let mut response = Vec::with_capacity(4096);
    loop {
        if socket.recv_batch(&mut queries, BATCH).await.is_err() {
            continue;
        }
        answers.clear();
        {
            let mut server = server.borrow_mut();
            for (query, from) in queries.iter() {
                if server.answer(query, Transport::Udp, &mut response) {
                    answers.push(&response, from);
                }
            }
        }
        // A full send buffer drops answers, as a congested network would.
        let _ = socket.send_batch(&answers).await;
    }
}

/// Serves length-prefixed queries on one connection until the client closes or idles.
async fn serve_tcp(mut stream: TcpStream, server: Rc<RefCell<Server>>) {
    let mut query = Vec::new();
    let mut response = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4098);
    loop {
        let mut length = [0u8; 2];
        if !matches!(
            fata::timeout(TCP_IDLE, read_exact(&mut stream, &mut length)).await,
            Ok(true)
        ) {
            return;
        }
        query.resize(usize::from(u16::from_be_bytes(length)), 0);
        if !matches!(
            fata::timeout(TCP_IDLE, read_exact(&mut stream, &mut query)).await,
            Ok(true)
        ) {
            return;
        }
        if !server
            .borrow_mut()
            .answer(&query, Transport::Tcp, &mut response)
        {
            continue;
        }
        framed.clear();
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Fills `buf`; false when the connection ends first.
async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        match stream.read(&mut buf[done..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => done += n,
        }
    }
    true
}
