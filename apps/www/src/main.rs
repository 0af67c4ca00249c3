//! Fata's website, served by a Fata app: the project's README and docs/, rendered into HTML when
//! the image is built (see `build.rs`), carried inside it as a read-only table and served over
//! HTTP/1.1 on port 80 (`--port N`) by fata-http.
//!
//! With `--site STORE` it serves the files of the key-value store STORE instead, each at `/` and
//! its key: a directory or a FAT image given with `fata run --kv STORE=PATH` (`fata disk create`
//! makes the image; `fata-site OUT` renders the docs into a directory for it).
//!
//! Options: `--port N`; `--ipv4 ADDR/PREFIX` (DHCP without it); `--max-connections N` (default
//! 1024: beyond it new connections are closed at once, so memory stays bounded); `--site STORE`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;

use fata::{Env, Error, Opt, Result, println};
use fata_http::{File, Limits, Server, Site, Timeouts};
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
    Opt::value(
        "--site",
        "STORE",
        "serve the files of key-value store STORE (fata run --kv STORE=DIR|IMG) instead of the docs in the image",
    ),
];

#[fata::main(options = [OPTIONS, fata_net::OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let port: u16 = env.arg("--port")?.unwrap_or(80);
    let max_connections: usize = env.arg("--max-connections")?.unwrap_or(1024);
    let store: Option<String> = env.arg("--site")?;
    let (site, from) = match &store {
        None => (Site::new(SITE), String::from("the image")),
        Some(name) => (site_from_store(&mut env, name)?, format!("store {name}")),
    };
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
    let pages = site.paths().filter(|p| p.ends_with(b".html")).count();
    let bytes = site.total_bytes();
    let files = site.len();
    let server: &'static Server<'static> =
        Box::leak(Box::new(Server::new(site, Limits::default())));
    let listener = TcpListener::bind(&stack, port)?;
    println!(
        "www: serving {pages} pages ({files} files, {bytes} bytes) from {from} on {address} port {port}"
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

/// The files of the key-value store `name` as a site, each at `/KEY`, with its content type from
/// its name and an ETag from its bytes. They are read once and kept for the program's life, as
/// the built-in site is.
fn site_from_store(env: &mut Env, name: &str) -> Result<Site<'static>> {
    let store = env.take_kv(name)?;
    let keys = store
        .list()
        .map_err(|e| Error::msg(format!("--site {name}: listing the store: {e}")))?;
    let mut files = Vec::with_capacity(keys.len());
    for key in keys {
        let body = store
            .get(&key)
            .map_err(|e| Error::msg(format!("--site {name}: reading {key}: {e}")))?;
        let path: &'static str = Box::leak(format!("/{key}").into_boxed_str());
        files.push(File {
            path,
            content_type: fata_http::content_type(path),
            etag: Box::leak(fata_http::etag(&body).into_boxed_str()),
            body: Box::leak(body.into_boxed_slice()),
        });
    }
    if files.is_empty() {
        return Err(Error::msg(format!(
            "--site {name}: the store holds no files: give a directory or FAT image with the site"
        )));
    }
    Ok(Site::new(&files))
}
