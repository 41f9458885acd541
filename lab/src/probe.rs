//! # Probes: talk to lab backends over real sockets
//!
//! A lab backend greets every TCP connection with one line `NAME PEER` (its
//! pod name and the client address it saw), answers each line it receives
//! with `NAME PEER LINE`, and answers each UDP datagram the same way. These
//! helpers run in whatever namespace the calling thread is in (see
//! [`crate::netns::run`]).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What a backend said: its name and the peer address it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub name: String,
    pub peer: SocketAddrV4,
    /// The echoed text, if any.
    pub echo: Option<String>,
}

impl Reply {
    /// Parses `NAME PEER [ECHO]`.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut it = line.splitn(3, ' ');
        let name = it.next().filter(|s| !s.is_empty())?.to_owned();
        let peer = it.next()?.parse().ok()?;
        let echo = it.next().map(str::to_owned);
        Some(Self { name, peer, echo })
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A TCP connection from `from` (any local address when `None`) to `to`.
pub fn tcp_connect(
    from: Option<Ipv4Addr>,
    to: SocketAddrV4,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(a) = from {
        s.bind(&SockAddr::from(SocketAddrV4::new(a, 0)))?;
    }
    s.connect_timeout(&SockAddr::from(to), timeout)?;
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(timeout))?;
    t.set_write_timeout(Some(timeout))?;
    t.set_nodelay(true)?;
    Ok(t)
}

/// A long-lived connection to a backend.
pub struct Conn {
    reader: BufReader<TcpStream>,
    /// The greeting: who answered and whom it saw.
    pub greeting: Reply,
}

impl Conn {
    /// Connects and reads the greeting.
    pub fn open(from: Option<Ipv4Addr>, to: SocketAddrV4, timeout: Duration) -> io::Result<Self> {
        let stream = tcp_connect(from, to, timeout)?;
        let peer = stream.peer_addr()?;
        if peer != SocketAddr::V4(to) {
            return Err(bad(format!("connected to {to} but the peer is {peer}")));
        }
        let mut reader = BufReader::new(stream);
        let greeting = read_reply(&mut reader)?;
        Ok(Self { reader, greeting })
    }

    /// Sends one line and reads the backend's answer to it.
    pub fn exchange(&mut self, msg: &str) -> io::Result<Reply> {
        let s = self.reader.get_mut();
        s.write_all(msg.as_bytes())?;
        s.write_all(b"\n")?;
        let r = read_reply(&mut self.reader)?;
        if r.echo.as_deref() != Some(msg) {
            return Err(bad(format!("sent {msg:?}, got {r:?}")));
        }
        if r.name != self.greeting.name {
            return Err(bad(format!(
                "connection to {} switched to {}",
                self.greeting.name, r.name
            )));
        }
        Ok(r)
    }

    /// The client side address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.reader.get_ref().local_addr()
    }
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    Reply::parse(&line).ok_or_else(|| bad(format!("unexpected reply {line:?}")))
}

/// One TCP connection: who answered.
pub fn tcp(from: Option<Ipv4Addr>, to: SocketAddrV4, timeout: Duration) -> io::Result<Reply> {
    Conn::open(from, to, timeout).map(|c| c.greeting)
}

/// One UDP datagram to `to`; returns the reply and the address it came from
/// (which must be `to` for a correct reverse NAT).
pub fn udp(
    from: Option<Ipv4Addr>,
    to: SocketAddrV4,
    timeout: Duration,
) -> io::Result<(Reply, SocketAddr)> {
    udp_bound(
        SocketAddrV4::new(from.unwrap_or(Ipv4Addr::UNSPECIFIED), 0),
        to,
        timeout,
    )
}

/// [`udp`] from a given source address and port.
pub fn udp_bound(
    from: SocketAddrV4,
    to: SocketAddrV4,
    timeout: Duration,
) -> io::Result<(Reply, SocketAddr)> {
    let sock = UdpSocket::bind(from)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send_to(b"probe", to)?;
    let mut buf = [0u8; 512];
    loop {
        let (n, src) = sock.recv_from(&mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(r) = Reply::parse(&text) {
            return Ok((r, src));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let r = Reply::parse("n1p1 198.18.0.1:40000\n").unwrap();
        assert_eq!(r.name, "n1p1");
        assert_eq!(r.peer, "198.18.0.1:40000".parse().unwrap());
        assert_eq!(r.echo, None);
        let r = Reply::parse("n1p1 198.18.0.1:40000 ping 3").unwrap();
        assert_eq!(r.echo.as_deref(), Some("ping 3"));
        for bad in ["", "n1p1", "n1p1 nope", " 1.2.3.4:5"] {
            assert!(Reply::parse(bad).is_none(), "{bad:?}");
        }
    }
}
