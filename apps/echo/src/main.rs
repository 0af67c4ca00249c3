//! Echo (RFC 862) over TCP and UDP on port 7 (`--port N`): every byte or datagram received is sent
//! back. Each TCP connection is a task of its own, so many are served at once.
#![no_std]
#![no_main]

use fata::{Env, Opt, Result, println};
use fata_net::{Stack, TcpListener, TcpStream, UdpSocket};

/// The options echo takes, besides the network's.
const OPTIONS: &[Opt] = &[Opt::value(
    "--port",
    "N",
    "the TCP and UDP port (default 7)",
)];

#[fata::main(options = [OPTIONS, fata_net::OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let port: u16 = env.arg("--port")?.unwrap_or(7);
    let stack = Stack::from_env(&mut env)?;
    let address = stack.wait_configured().await;
    let udp = UdpSocket::bind(&stack, port)?;
    let listener = TcpListener::bind(&stack, port)?;
    println!("echo: serving TCP and UDP on {address} port {port}");
    fata::spawn(echo_datagrams(udp)).detach();
    loop {
        // A connection reset before it was accepted is not the server's problem.
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        fata::spawn(echo_stream(stream)).detach();
    }
}

async fn echo_datagrams(socket: UdpSocket) {
    let mut buf = [0u8; 2048];
    loop {
        // A datagram too large for the buffer is dropped; the next one is served.
        if let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..len], from).await;
        }
    }
}

async fn echo_stream(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(len @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..len]).await.is_err() {
            return;
        }
    }
    // The peer closed its side: finish sending what it sent, then close ours.
    stream.shutdown();
    let _ = stream.flush().await;
}
