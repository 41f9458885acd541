//! # Probes: talk to lab backends over real sockets
//!
//! A lab backend greets every TCP connection with one line `NAME PEER` (its
//! pod name and the client address it saw), answers each line it receives
//! with `NAME PEER LINE`, and answers each UDP datagram the same way. These
//! helpers run in whatever namespace the calling thread is in (see
//! [`crate::netns::run`]). Destinations are of either family; a source
//! address given as `Option<Ipv4Addr>` has an `_ip` variant taking either.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What a backend said: its name and the peer address it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub name: String,
    pub peer: SocketAddr,
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
    to: impl Into<SocketAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    tcp_connect_ip(from.map(IpAddr::V4), to.into(), timeout)
}

/// [`tcp_connect`] from an address of either family.
pub fn tcp_connect_ip(
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(a) = from {
        s.bind(&SockAddr::from(SocketAddr::new(a, 0)))?;
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
    pub fn open(
        from: Option<Ipv4Addr>,
        to: impl Into<SocketAddr>,
        timeout: Duration,
    ) -> io::Result<Self> {
        Self::open_ip(from.map(IpAddr::V4), to.into(), timeout)
    }

    /// [`Conn::open`] from an address of either family.
    pub fn open_ip(from: Option<IpAddr>, to: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = tcp_connect_ip(from, to, timeout)?;
        let peer = stream.peer_addr()?;
        if peer != to {
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
pub fn tcp(
    from: Option<Ipv4Addr>,
    to: impl Into<SocketAddr>,
    timeout: Duration,
) -> io::Result<Reply> {
    Conn::open(from, to, timeout).map(|c| c.greeting)
}

/// [`tcp`] from an address of either family.
pub fn tcp_ip(from: Option<IpAddr>, to: SocketAddr, timeout: Duration) -> io::Result<Reply> {
    Conn::open_ip(from, to, timeout).map(|c| c.greeting)
}

/// The unspecified address of `to`'s family.
pub fn any_of_family(to: SocketAddr) -> IpAddr {
    match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// One UDP datagram to `to`; returns the reply and the address it came from
/// (which must be `to` for a correct reverse NAT).
pub fn udp(
    from: Option<Ipv4Addr>,
    to: impl Into<SocketAddr>,
    timeout: Duration,
) -> io::Result<(Reply, SocketAddr)> {
    udp_ip(from.map(IpAddr::V4), to.into(), timeout)
}

/// [`udp`] from an address of either family.
pub fn udp_ip(
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<(Reply, SocketAddr)> {
    let from = SocketAddr::new(from.unwrap_or_else(|| any_of_family(to)), 0);
    udp_bound(from, to, timeout)
}

/// [`udp`] from a given source address and port.
pub fn udp_bound(
    from: impl Into<SocketAddr>,
    to: impl Into<SocketAddr>,
    timeout: Duration,
) -> io::Result<(Reply, SocketAddr)> {
    let to = to.into();
    let sock = UdpSocket::bind(from.into())?;
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
        let r = Reply::parse("n1p1 [fd00:198:18::1]:40000 ping").unwrap();
        assert_eq!(r.peer, "[fd00:198:18::1]:40000".parse().unwrap());
        for bad in ["", "n1p1", "n1p1 nope", " 1.2.3.4:5"] {
            assert!(Reply::parse(bad).is_none(), "{bad:?}");
        }
    }
}
