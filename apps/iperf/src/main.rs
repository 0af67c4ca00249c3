//! An iperf3 server for TCP uploads and downloads (`iperf3 -c ADDR [-R] [-P N] [-t SECS]`), on
//! port 5201 (`--port`).
//!
//! It speaks the iperf3 control protocol far enough for the stock client to run a test and print
//! its figures: cookie, parameter exchange, stream creation, test start/end and the results
//! exchange. Uploaded data is counted and discarded; in reverse mode (`-R`) every stream sends
//! until the client ends the test. Bidirectional (`--bidir`) and UDP tests are refused with an
//! error the client prints.
//!
//! Written for Fata because iperf3 needs an iperf3 server at the other end, and none runs as a
//! unikernel; the protocol is small and its messages are bounded here.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;

use fata::{Env, Instant, Opt, Result, println};
use fata_net::{NetError, Stack, TcpListener, TcpStream, Tuning};

/// Length of the session cookie every iperf3 connection starts with.
const COOKIE_LEN: usize = 37;
/// The longest JSON message accepted from a client.
const JSON_MAX: usize = 64 * 1024;

/// iperf3's control states, one signed byte each on the control connection.
mod state {
    pub const TEST_START: u8 = 1;
    pub const TEST_RUNNING: u8 = 2;
    pub const TEST_END: u8 = 4;
    pub const PARAM_EXCHANGE: u8 = 9;
    pub const CREATE_STREAMS: u8 = 10;
    pub const EXCHANGE_RESULTS: u8 = 13;
    pub const DISPLAY_RESULTS: u8 = 14;
    pub const SERVER_ERROR: u8 = (-2i8) as u8;
}

/// The options iperf takes, besides the network's.
const OPTIONS: &[Opt] = &[Opt::value("--port", "N", "the TCP port (default 5201)")];

#[fata::main(options = [OPTIONS, fata_net::OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let port: u16 = env.arg("--port")?.unwrap_or(5201);
    // Bulk data either way: buffers of 1 MiB keep several 64 KiB segments in flight (the window
    // and the unacknowledged data), and a test opens few connections at once.
    let tuning = Tuning {
        tcp_rx_buffer: 1024 * 1024,
        tcp_tx_buffer: 1024 * 1024,
        tcp_backlog: 4,
        ..Tuning::default()
    };
    let stack = Stack::from_env_tuned(&mut env, tuning)?;
    let address = stack.wait_configured().await;
    let listener = TcpListener::bind(&stack, port)?;
    println!("iperf: listening on {address} port {port}");
    loop {
        let (control, peer) = listener.accept().await?;
        match run_test(&listener, control).await {
            Ok((bytes, false)) => println!("iperf: test from {peer}: {bytes} bytes received"),
            Ok((bytes, true)) => println!("iperf: test from {peer}: {bytes} bytes sent"),
            Err(e) => println!("iperf: test from {peer} failed: {e}"),
        }
    }
}

/// Why a test ended early.
enum TestError {
    Net(NetError),
    Protocol(&'static str),
}

impl From<NetError> for TestError {
    fn from(e: NetError) -> TestError {
        TestError::Net(e)
    }
}

impl core::fmt::Display for TestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TestError::Net(e) => write!(f, "{e}"),
            TestError::Protocol(what) => f.write_str(what),
        }
    }
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> core::result::Result<(), TestError> {
    let mut done = 0;
    while done < buf.len() {
        match stream.read(&mut buf[done..]).await? {
            0 => {
                return Err(TestError::Protocol(
                    "the client closed the control connection",
                ));
            }
            n => done += n,
        }
    }
    Ok(())
}

async fn read_json(stream: &mut TcpStream) -> core::result::Result<String, TestError> {
    let mut len = [0u8; 4];
    read_exact(stream, &mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > JSON_MAX {
        return Err(TestError::Protocol(
            "the client sent an oversized JSON message",
        ));
    }
    let mut json = alloc::vec![0u8; len];
    read_exact(stream, &mut json).await?;
    String::from_utf8(json)
        .map_err(|_| TestError::Protocol("the client sent JSON that is not UTF-8"))
}

async fn write_json(stream: &mut TcpStream, json: &str) -> core::result::Result<(), TestError> {
    stream.write_all(&(json.len() as u32).to_be_bytes()).await?;
    stream.write_all(json.as_bytes()).await?;
    Ok(())
}

/// The number after `"key":` in a flat JSON object, if any.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Whether `"key": true` appears.
fn json_true(json: &str, key: &str) -> bool {
    json.find(&format!("\"{key}\"")).is_some_and(|at| {
        json[at + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')
            .is_some_and(|r| r.trim_start().starts_with("true"))
    })
}

/// Runs one test on an accepted control connection; returns the bytes received, or sent in
/// reverse mode (then `true`).
async fn run_test(
    listener: &TcpListener,
    mut control: TcpStream,
) -> core::result::Result<(u64, bool), TestError> {
    let mut cookie = [0u8; COOKIE_LEN];
    read_exact(&mut control, &mut cookie).await?;
    control.write_all(&[state::PARAM_EXCHANGE]).await?;
    let params = read_json(&mut control).await?;
    if json_true(&params, "udp") || json_true(&params, "bidirectional") {
        control.write_all(&[state::SERVER_ERROR]).await?;
        return Err(TestError::Protocol(
            "only TCP uploads and downloads are served (no --bidir or -u)",
        ));
    }
    let reverse = json_true(&params, "reverse");
    let parallel = json_number(&params, "parallel").unwrap_or(1).clamp(1, 128) as usize;
    control.write_all(&[state::CREATE_STREAMS]).await?;

    let mut counters: Vec<Rc<Cell<u64>>> = Vec::new();
    let mut streams = Vec::new();
    while streams.len() < parallel {
        let (mut data, _) = listener.accept().await?;
        let mut theirs = [0u8; COOKIE_LEN];
        read_exact(&mut data, &mut theirs).await?;
        if theirs != cookie {
            // Another client while a test runs: iperf3 answers "busy" the same way.
            continue;
        }
        let moved = Rc::new(Cell::new(0u64));
        counters.push(moved.clone());
        streams.push(fata::spawn(async move {
            let mut buf = alloc::vec![0u8; 128 * 1024];
            if reverse {
                // Until the client ends the test and closes the stream.
                while let Ok(n @ 1..) = data.write(&buf).await {
                    moved.set(moved.get() + n as u64);
                }
            } else {
                while let Ok(n @ 1..) = data.read(&mut buf).await {
                    moved.set(moved.get() + n as u64);
                }
            }
        }));
    }
    let start = Instant::now();
    control.write_all(&[state::TEST_START]).await?;
    control.write_all(&[state::TEST_RUNNING]).await?;

    let mut byte = [0u8; 1];
    loop {
        read_exact(&mut control, &mut byte).await?;
        if byte[0] == state::TEST_END {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes: u64 = counters.iter().map(|c| c.get()).sum();
    control.write_all(&[state::EXCHANGE_RESULTS]).await?;
    let _client_results = read_json(&mut control).await?;
    // Stream ids as the iperf3 client numbers them: 1, then 3, 4, ...
    let streams_json: Vec<String> = counters
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let id = if i == 0 { 1 } else { i + 2 };
            let stream_bytes = count.get();
            format!(
                "{{\"id\":{id},\"bytes\":{stream_bytes},\"retransmits\":-1,\"jitter\":0,\"errors\":0,\
                 \"omitted_errors\":0,\"packets\":0,\"omitted_packets\":0,\"start_time\":0,\"end_time\":{seconds}}}"
            )
        })
        .collect();
    let results = format!(
        "{{\"cpu_util_total\":0,\"cpu_util_user\":0,\"cpu_util_system\":0,\"sender_has_retransmits\":-1,\
         \"streams\":[{}]}}",
        streams_json.join(",")
    );
    write_json(&mut control, &results).await?;
    control.write_all(&[state::DISPLAY_RESULTS]).await?;
    // The client answers IPERF_DONE and closes; either ends the test.
    let _ = control.read(&mut byte).await;
    drop(streams);
    Ok((bytes, reverse))
}
