//! # `xlb lab backend`: the lab's pod server
//!
//! Answers every TCP connection at once with one line `NAME PEER` (its name
//! and the client address it saw, so tests see whether the client address was
//! preserved), then answers each line received with `NAME PEER LINE`. With
//! `--udp`, every datagram gets `NAME PEER` (plus the datagram's text).
//! IPv6 addresses are bound IPv6-only, so `0.0.0.0:P` and `[::]:P` can be
//! listened on side by side (a dual-stack pod).

use std::net::SocketAddr;

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Longest line a client may send; longer input closes the connection.
pub const MAX_LINE: usize = 4096;

/// Run a lab backend.
///
/// Examples:
///   xlb lab backend --name n1p1 --listen 0.0.0.0:8080 --udp
///   xlb lab backend --name web --listen 10.244.1.2:8080,10.244.1.2:9090
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct BackendArgs {
    /// Name to answer with (the pod name): no spaces.
    #[arg(long, value_parser = parse_name)]
    pub name: String,
    /// Addresses to listen on (ADDR:PORT, comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub listen: Vec<SocketAddr>,
    /// Also answer UDP on the same addresses.
    #[arg(long)]
    pub udp: bool,
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("1-64 characters without spaces".into())
    } else {
        Ok(s.to_owned())
    }
}

pub fn run(a: BackendArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(a))
}

/// Binds every address, then serves until killed.
pub async fn serve(a: BackendArgs) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for addr in &a.listen {
        let l = bind(*addr, Type::STREAM)
            .and_then(|s| {
                s.listen(1024)?;
                TcpListener::from_std(s.into())
            })
            .with_context(|| format!("listening on tcp {addr}"))?;
        tasks.spawn(tcp_loop(l, a.name.clone()));
        if a.udp {
            let u = bind(*addr, Type::DGRAM)
                .and_then(|s| UdpSocket::from_std(s.into()))
                .with_context(|| format!("listening on udp {addr}"))?;
            tasks.spawn(udp_loop(u, a.name.clone()));
        }
    }
    tracing::info!(name = %a.name, listen = ?a.listen, udp = a.udp, "backend ready");
    while let Some(r) = tasks.join_next().await {
        r.context("backend task")??;
    }
    Ok(())
}

/// A non-blocking socket bound to `addr` (IPv6-only for an IPv6 address).
fn bind(addr: SocketAddr, ty: Type) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

async fn tcp_loop(l: TcpListener, name: String) -> anyhow::Result<()> {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let name = name.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn(s, peer, &name).await {
                        tracing::debug!(%peer, "connection: {e}");
                    }
                });
            }
            // Out of fds and the like: keep serving the connections we have.
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn conn(mut s: TcpStream, peer: SocketAddr, name: &str) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    s.write_all(format!("{name} {peer}\n").as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..i]);
            out.extend_from_slice(format!("{name} {peer} {}\n", text.trim_end()).as_bytes());
        }
        if buf.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
        }
    }
}

async fn udp_loop(u: UdpSocket, name: String) -> anyhow::Result<()> {
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = match u.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("udp recv: {e}");
                continue;
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let text = text.trim_end();
        let reply = if text.is_empty() {
            format!("{name} {peer}\n")
        } else {
            format!("{name} {peer} {text}\n")
        };
        if let Err(e) = u.send_to(reply.as_bytes(), peer).await {
            tracing::debug!(%peer, "udp send: {e}");
        }
    }
}
