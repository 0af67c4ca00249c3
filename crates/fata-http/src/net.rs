//! The connection loop: the core driven over a fata-net TCP stream, with timeouts.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use fata::{Clock, Instant, SysClock};
use fata_net::TcpStream;

use crate::server::{Outcome, Server};

/// How long the server waits on a client before giving up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A connection with no request under way is closed after this long.
    pub idle: Duration,
    /// A request must arrive whole within this long of its first byte; otherwise `408` and close.
    pub request: Duration,
    /// A client that takes longer than this to accept a response is disconnected.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(15),
            request: Duration::from_secs(5),
            write: Duration::from_secs(20),
        }
    }
}

/// Responses are gathered into one buffer and written at once; bodies larger than this are
/// written straight from the site instead of being copied into it.
const GATHER: usize = 16 * 1024;

/// Serves one connection until the client closes it, misbehaves or idles.
///
/// Pipelined requests are answered in order and their responses written together. Buffers are
/// allocated once per connection, not per request.
pub async fn serve_connection(server: &Server<'_>, mut stream: TcpStream, timeouts: Timeouts) {
    let mut input = vec![0u8; server.limits().buffer_len()];
    let mut filled = 0;
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    // When the first byte of the request under way arrived.
    let mut started: Option<Instant> = None;
    loop {
        let now_secs = SysClock.wall_clock_ns() / 1_000_000_000;
        let mut start = 0;
        let mut close = false;
        while !close {
            match server.respond(&input[start..filled], now_secs, &mut out) {
                Outcome::Incomplete => break,
                Outcome::Respond {
                    consumed,
                    body,
                    close: done,
                    ..
                } => {
                    start += consumed;
                    close = done;
                    if out.len() + body.len() <= GATHER {
                        out.extend_from_slice(body);
                    } else {
                        if !send(&mut stream, &out, timeouts.write).await
                            || !send(&mut stream, body, timeouts.write).await
                        {
                            return;
                        }
                        out.clear();
                    }
                }
            }
        }
        input.copy_within(start..filled, 0);
        filled -= start;
        if start > 0 {
            started = (filled > 0).then(Instant::now);
        }
        if !out.is_empty() {
            if !send(&mut stream, &out, timeouts.write).await {
                return;
            }
            out.clear();
        }
        if close || filled == input.len() {
            return goodbye(stream, timeouts).await;
        }
        let wait = match started {
            None => timeouts.idle,
            Some(at) => timeouts.request.saturating_sub(at.elapsed()),
        };
        match fata::timeout(wait, stream.read(&mut input[filled..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => {
                if filled == 0 {
                    started = Some(Instant::now());
                }
                filled += n;
            }
            Err(_) if filled == 0 => return,
            Err(_) => {
                let now_secs = SysClock.wall_clock_ns() / 1_000_000_000;
                if let Outcome::Respond { body, .. } = server.timed_out(now_secs, &mut out) {
                    out.extend_from_slice(body);
                }
                if send(&mut stream, &out, timeouts.write).await {
                    goodbye(stream, timeouts).await;
                }
                return;
            }
        }
    }
}

/// Writes all of `bytes` within `limit`; false when the connection is gone or too slow.
async fn send(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> bool {
    matches!(
        fata::timeout(limit, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Closes our side and gives the client a moment to take the last response.
async fn goodbye(mut stream: TcpStream, timeouts: Timeouts) {
    stream.shutdown();
    let _ = fata::timeout(timeouts.write, stream.flush()).await;
}
