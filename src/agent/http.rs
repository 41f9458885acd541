//! The agent's minimal HTTP/1.1 server side: read one request head, write
//! one response, close. Enough for probes and load-balancer health checks
//! (no keep-alive, no request bodies).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Time a client gets to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The request line of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
}

impl Request {
    pub fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Reads a request head. `Ok(None)`: the peer closed before sending one, or
/// sent more than 16 KiB of head (answered with 431 here).
pub async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > MAX_HEAD {
            respond(
                s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
                false,
            )
            .await?;
            return Ok(None);
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_owned();
    Ok(Some(Request { method, path }))
}

/// Writes a complete response and closes the write side.
pub async fn respond(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    if !head_only {
        s.write_all(body.as_bytes()).await?;
    }
    s.shutdown().await
}

/// `t` as Go's `time.Time.String()` prints a UTC time
/// (`2006-01-02 15:04:05.999999999 +0000 UTC`), the format of kube-proxy's
/// health bodies.
pub fn go_time(t: std::time::SystemTime) -> String {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let mut s = format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let ns = d.subsec_nanos();
    if ns != 0 {
        // Go prints the fraction without trailing zeros.
        let frac = format!("{ns:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn go_time_format() {
        assert_eq!(go_time(UNIX_EPOCH), "1970-01-01 00:00:00 +0000 UTC");
        // 2024-02-29 12:34:56.5 UTC (a leap day).
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 500_000_000);
        assert_eq!(go_time(t), "2024-02-29 12:34:56.5 +0000 UTC");
        let t = UNIX_EPOCH + Duration::new(1_798_761_599, 123);
        assert_eq!(go_time(t), "2026-12-31 23:59:59.000000123 +0000 UTC");
    }
}
