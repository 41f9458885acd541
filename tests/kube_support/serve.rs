//! The fake API server's HTTP side: one connection's request (list or
//! watch, with the scripted faults), and the chunked watch stream.

use super::*;

impl FakeApi {
    pub async fn serve(self: Arc<Self>, mut s: TcpStream) {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        self.state.lock().unwrap().targets.push(target.clone());
        let is_watch = matches!(params.get("watch"), Some(&"true") | Some(&"1"));
        let rv_param = params.get("resourceVersion").map(|s| s.to_string());
        let path: &'static str = match path {
            SERVICES => SERVICES,
            SLICES => SLICES,
            NODES => NODES,
            _ => {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                return;
            }
        };
        self.state
            .lock()
            .unwrap()
            .requests
            .push((path.to_string(), is_watch, rv_param.clone()));
        let fault = self.faults.lock().unwrap().get(&(path, is_watch)).copied();
        if let Some(Fault::Status(code)) = fault {
            let body = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
                "status": "Failure", "reason": "InternalError", "code": code,
                "message": "scripted failure"})
            .to_string();
            let resp = format!(
                "HTTP/1.1 {code} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            return;
        }
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs);
        if is_watch {
            self.watch(s, path, rv_param, fault, timeout).await;
        } else {
            let body = {
                let st = self.state.lock().unwrap();
                let (api_version, kind) = list_kind(path);
                // Pages as the real server cuts them: `limit` items, and a
                // `continue` token (here: the offset) while more remain.
                let from: usize = params
                    .get("continue")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let limit: usize = params
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(usize::MAX);
                let total = st.objects.get(path).map_or(0, |m| m.len());
                let next = from.saturating_add(limit);
                let cont = if next < total {
                    next.to_string()
                } else {
                    String::new()
                };
                let items: Vec<Value> = st
                    .objects
                    .get(path)
                    .map(|m| {
                        m.values()
                            .skip(from)
                            .take(limit)
                            .map(|o| {
                                // Like the real server, list items carry no apiVersion/kind.
                                let mut o = o.clone();
                                o.as_object_mut().unwrap().remove("apiVersion");
                                o.as_object_mut().unwrap().remove("kind");
                                o
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"apiVersion": api_version, "kind": kind,
                       "metadata": {"resourceVersion": st.rv.to_string(), "continue": cont},
                       "items": items})
                .to_string()
            };
            let body = match fault {
                Some(Fault::Garbage) => {
                    "{\"kind\": \"ServiceList\", \"items\": [}}} <html>".to_string()
                }
                _ => body,
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            match fault {
                Some(Fault::Truncated) => {
                    let _ = s.write_all(&body.as_bytes()[..body.len() / 2]).await;
                }
                Some(Fault::Stall) => {
                    let _ = s.write_all(&body.as_bytes()[..body.len() / 2]).await;
                    let _ = s.flush().await;
                    self.hold(&mut s).await;
                }
                _ => {
                    let _ = s.write_all(body.as_bytes()).await;
                }
            }
        }
    }

    /// Keeps the connection open and silent until the client goes or the
    /// connections are cut.
    async fn hold(&self, s: &mut TcpStream) {
        let mut cut = self.cut.subscribe();
        cut.mark_unchanged();
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                _ = cut.changed() => return,
                r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
            }
        }
    }

    pub async fn watch(
        &self,
        mut s: TcpStream,
        path: &'static str,
        rv: Option<String>,
        fault: Option<Fault>,
        timeout: Option<Duration>,
    ) {
        let from: u64 = rv.and_then(|r| r.parse().ok()).unwrap_or(0);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if fault == Some(Fault::Stall) {
            return self.hold(&mut s).await;
        }
        if fault == Some(Fault::Garbage) {
            let line = "this is { not json\n";
            let _ = s
                .write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
                .await;
        }
        // The server-side timeout (timeoutSeconds): the watch ends normally.
        let end = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
        let mut end = std::pin::pin!(end);
        let mut cut = self.cut.subscribe();
        cut.mark_unchanged();
        let (expired, mut live_seen) = {
            let st = self.state.lock().unwrap();
            (from < st.compacted, st.live.len() as u64)
        };
        if expired {
            let _ = send_chunk(&mut s, &gone(from)).await;
            let _ = s.write_all(b"0\r\n\r\n").await;
            return;
        }
        let mut sent_rv = from;
        loop {
            let wake = self.wake.notified();
            let mut wake = std::pin::pin!(wake);
            wake.as_mut().enable();
            let (events, live) = {
                let st = self.state.lock().unwrap();
                let events: Vec<Ev> = st
                    .log
                    .iter()
                    .filter(|e| e.path == path && e.rv > sent_rv)
                    .cloned()
                    .collect();
                let live: Vec<Ev> = st.live[live_seen as usize..]
                    .iter()
                    .filter(|(_, e)| e.path == path)
                    .map(|(_, e)| e.clone())
                    .collect();
                live_seen = st.live.len() as u64;
                (events, live)
            };
            for e in events {
                sent_rv = e.rv;
                if fault == Some(Fault::CutMidObject) {
                    let mut line = e.line.to_string();
                    line.push('\n');
                    let half = &line[..line.len() / 2];
                    let _ = s
                        .write_all(format!("{:x}\r\n{half}", line.len()).as_bytes())
                        .await;
                    self.state.lock().unwrap().cut_mid_object += 1;
                    return;
                }
                if send_chunk(&mut s, &e.line).await.is_err() {
                    return;
                }
            }
            for e in live {
                let is_error = e.line["type"] == "ERROR";
                if send_chunk(&mut s, &e.line).await.is_err() {
                    return;
                }
                if e.line["type"] == "BOOKMARK" {
                    self.state.lock().unwrap().bookmarks_sent += 1;
                }
                if is_error {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                    return;
                }
            }
            tokio::select! {
                biased;
                _ = cut.changed() => return, // drop the socket mid-stream
                _ = &mut end => {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                    return;
                }
                _ = &mut wake => {}
            }
        }
    }
}

pub fn gone(rv: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "reason": "Expired", "code": 410,
        "message": format!("too old resource version: {rv}")}})
}

pub async fn send_chunk(s: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await
}
