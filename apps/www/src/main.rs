//! Fata's website, served by a Fata app: the project's README and docs/, rendered into HTML when
//! the image is built (see `build.rs`), carried inside it as a read-only table and served over
//! HTTP/1.1 on port 80 (`--port N`) by fata-http.
//!
//! Options: `--port N`; `--ipv4 ADDR/PREFIX` (DHCP without it); `--max-connections N` (default
//! 1024: beyond it new connections are closed at once, so memory stays bounded).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::cell::Cell;

use fata::{Env, Opt, Result, println};
use fata_http::{Limits, Server, Site, Timeouts};
use fata_net::{Stack, TcpListener, Tuning};

include!(concat!(env!("OUT_DIR"), "/site.rs"));

/// The options www takes, besides the network's.
const OPTIONS: &[Opt] = &[
    Opt::value("--port", "N", "the HTTP port (default 80)"),
    Opt::value(
        "--max-connections",
        "N",
        "connections served at once; more are closed at once (default 1024)",
    ),
];

#[fata::main(options = [OPTIONS, fata_net::OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let port: u16 = env.arg("--port")?.unwrap_or(80);
    let max_connections: usize = env.arg("--max-connections")?.unwrap_or(1024);
    // Buffers sized for many small exchanges: requests are small (8 KiB receive window), a page
    // fits the send buffer in one write.
    let tuning = Tuning {
        tcp_rx_buffer: 8 * 1024,
        tcp_tx_buffer: 32 * 1024,
        tcp_backlog: 64,
        ..Tuning::default()
    };
    let stack = Stack::from_env_tuned(&mut env, tuning)?;
    let address = stack.wait_configured().await;
    let site = Site::new(SITE);
    let pages = site.paths().filter(|p| p.ends_with(b".html")).count();
    let bytes = site.total_bytes();
    let server: &'static Server<'static> =
        Box::leak(Box::new(Server::new(site, Limits::default())));
    let listener = TcpListener::bind(&stack, port)?;
    println!(
        "www: serving {pages} pages ({} files, {bytes} bytes) on {} port {port}",
        SITE.len(),
        address.address()
    );
    let open = Rc::new(Cell::new(0usize));
    loop {
        // A connection reset before it was accepted is not the server's problem.
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        if open.get() >= max_connections {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let open = open.clone();
        fata::spawn(async move {
            fata_http::serve_connection(server, stream, Timeouts::default()).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}
