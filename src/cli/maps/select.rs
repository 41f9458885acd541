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

    pub(super) fn frontend_matches(&self, svc_id: u32, k: &xlb_svc_key) -> bool {
        if self.id_matches(svc_id) {
            return true;
        }
        if k.is_nodeport() {
            return self.sel.strip_prefix(':').or(self.sel.strip_prefix("*:"))
                == Some(&k.port().to_string());
        }
        if let Ok(ip) = self.sel.parse::<Ipv4Addr>() {
            return ip == k.ip();
        }
        self.sel.parse::<SocketAddrV4>().ok() == Some(SocketAddrV4::new(k.ip(), k.port()))
    }
}

/// Which backends a `--backend` selector names.
pub(super) fn backend_matches(sel: &str, id: u32, b: Option<&xlb_backend>) -> bool {
    if sel.parse::<u32>().ok() == Some(id) {
        return true;
    }
    let Some(b) = b else {
        return false;
    };
    if let Ok(ip) = sel.parse::<Ipv4Addr>() {
        return ip == *b.sockaddr().ip();
    }
    sel.parse::<SocketAddrV4>().ok() == Some(b.sockaddr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn service_selectors() {
        let mut names = BTreeMap::new();
        names.insert(3, "default/web:80/TCP".to_string());
        let k = xlb_svc_key::addr("10.96.0.10:80".parse().unwrap(), xlb_bpf::Proto::Tcp);
        let np = xlb_svc_key::nodeport(30080, xlb_bpf::Proto::Tcp);
        let m = |s: &str, id, k: &xlb_svc_key| {
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
        let b = xlb_backend::new("10.244.1.5:8080".parse().unwrap(), None, 1);
        assert!(backend_matches("7", 7, Some(&b)));
        assert!(backend_matches("10.244.1.5", 1, Some(&b)));
        assert!(backend_matches("10.244.1.5:8080", 1, Some(&b)));
        assert!(!backend_matches("10.244.1.5:80", 1, Some(&b)));
        assert!(!backend_matches("10.244.1.5", 1, None));
    }
}
