//! `--service` and `--backend` of `xlb maps`: which rows a selector keeps
//! (a Service id, name, name:port[/PROTO], address[:port] or :nodePort; a
//! backend id or address[:port]).

use super::*;

/// Which Services a `--service` selector names.
pub(super) struct SvcSel<'a> {
    pub(super) sel: &'a str,
    pub(super) names: &'a BTreeMap<u32, String>,
}

impl SvcSel<'_> {
    pub(super) fn name_matches(&self, svc_id: u32) -> bool {
        let Some(name) = self.names.get(&svc_id) else {
            return false;
        };
        // "ns/name:port/PROTO": match it whole, or "ns/name", or "ns/name:port".
        name == self.sel
            || name.split(':').next() == Some(self.sel)
            || name.rsplit_once('/').map(|(a, _)| a) == Some(self.sel)
    }

    pub(super) fn id_matches(&self, svc_id: u32) -> bool {
        self.sel.parse::<u32>().ok() == Some(svc_id) || self.name_matches(svc_id)
    }

    pub(super) fn frontend_matches(&self, svc_id: u32, k: &Fe) -> bool {
        if self.id_matches(svc_id) {
            return true;
        }
        let Some(addr) = k.addr else {
            return self.sel.strip_prefix(':').or(self.sel.strip_prefix("*:"))
                == Some(&k.port.to_string())
                || (k.v6 && self.sel.strip_prefix("[*]:") == Some(&k.port.to_string()));
        };
        if let Ok(ip) = self.sel.parse::<std::net::IpAddr>() {
            return ip == addr;
        }
        self.sel.parse::<std::net::SocketAddr>().ok()
            == Some(std::net::SocketAddr::new(addr, k.port))
    }
}

/// Which backends a `--backend` selector names (an IPv6 one as `addr` or
/// `[addr]:port`).
pub(super) fn backend_matches(sel: &str, id: u32, b: Option<&Be>) -> bool {
    if sel.parse::<u32>().ok() == Some(id) {
        return true;
    }
    let Some(b) = b else {
        return false;
    };
    if let Ok(ip) = sel.parse::<std::net::IpAddr>() {
        return ip == b.addr.ip();
    }
    sel.parse::<std::net::SocketAddr>().ok() == Some(b.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(addr: Option<&str>, port: u16, v6: bool) -> Fe {
        Fe {
            addr: addr.map(|a| a.parse().unwrap()),
            port,
            proto: 6,
            v6,
            internal: false,
            val: xlb_svc_val::default(),
        }
    }

    fn be(a: &str) -> Be {
        Be {
            addr: a.parse().unwrap(),
            node: None,
            flags: XLB_BE_F_ACTIVE as u8,
            generation: 1,
        }
    }

    #[test]
    pub(super) fn service_selectors() {
        let mut names = BTreeMap::new();
        names.insert(3, "default/web:80/TCP".to_string());
        let k = fe(Some("10.96.0.10"), 80, false);
        let np = fe(None, 30080, false);
        let m = |s: &str, id, k: &Fe| {
            SvcSel {
                sel: s,
                names: &names,
            }
            .frontend_matches(id, k)
        };
        for s in [
            "3",
            "default/web",
            "default/web:80",
            "default/web:80/TCP",
            "10.96.0.10",
            "10.96.0.10:80",
        ] {
            assert!(m(s, 3, &k), "{s}");
        }
        for s in [
            "4",
            "default/we",
            "10.96.0.11",
            "10.96.0.10:81",
            "kube-system/web",
        ] {
            assert!(!m(s, 3, &k), "{s}");
        }
        assert!(m(":30080", 9, &np));
        assert!(m("*:30080", 9, &np));
        assert!(!m("10.96.0.10:30080", 9, &np));
        let b = be("10.244.1.5:8080");
        assert!(backend_matches("7", 7, Some(&b)));
        assert!(backend_matches("10.244.1.5", 1, Some(&b)));
        assert!(backend_matches("10.244.1.5:8080", 1, Some(&b)));
        assert!(!backend_matches("10.244.1.5:80", 1, Some(&b)));
        assert!(!backend_matches("10.244.1.5", 1, None));
    }

    #[test]
    fn ipv6_selectors_in_any_spelling() {
        let names = BTreeMap::new();
        let k = fe(Some("2001:db8::10"), 80, true);
        let np6 = fe(None, 30080, true);
        let m = |s: &str, k: &Fe| {
            SvcSel {
                sel: s,
                names: &names,
            }
            .frontend_matches(9, k)
        };
        for s in ["2001:db8::10", "2001:0db8:0:0::10", "[2001:db8::10]:80"] {
            assert!(m(s, &k), "{s}");
        }
        for s in [
            "2001:db8::11",
            "[2001:db8::10]:81",
            "2001:db8::10:80",
            "10.96.0.10",
        ] {
            assert!(!m(s, &k), "{s}");
        }
        assert!(m(":30080", &np6) && m("*:30080", &np6) && m("[*]:30080", &np6));
        assert!(!m("[*]:30080", &fe(None, 30080, false)));
        assert_eq!(k.endpoint(), "[2001:db8::10]:80");
        assert_eq!(np6.endpoint(), "[*]:30080");
        let b = be("[fd00:244:1::5]:8080");
        for s in [
            "fd00:244:1::5",
            "[fd00:244:1::5]:8080",
            "fd00:244:1:0:0:0:0:5",
        ] {
            assert!(backend_matches(s, 1, Some(&b)), "{s}");
        }
        assert!(!backend_matches("[fd00:244:1::5]:80", 1, Some(&b)));
        assert!(!backend_matches("fd00:244:1::6", 1, Some(&b)));
    }
}
