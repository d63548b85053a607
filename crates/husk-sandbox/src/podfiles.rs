//! The files a pod's containers see: hostname, hosts and resolv.conf.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::{Dns, Network, PodConfig};
use crate::error::Error;

/// The hosts file a pod with its own network gets (CRI's default).
pub const POD_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// The pod's hostname: the configured one, the host's for host networking,
/// else the sandbox id cut to the kernel's limit.
pub fn hostname(pod: &PodConfig, id: &str, network: &Network) -> String {
    if !pod.hostname.is_empty() {
        return pod.hostname.clone();
    }
    if *network == Network::Host {
        return nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
    }
    id.chars().take(63).collect()
}

/// Checks the DNS config: servers must be IP addresses, and no entry may
/// contain white space that would break the file's syntax.
pub fn check_dns(dns: &Dns) -> Result<(), Error> {
    for s in &dns.servers {
        s.parse::<IpAddr>()
            .map_err(|_| Error::invalid(format!("dns server {s:?} is not an IP address")))?;
    }
    for v in dns.searches.iter().chain(&dns.options) {
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '\0') {
            return Err(Error::invalid(format!(
                "dns search or option {v:?} is empty or has white space"
            )));
        }
    }
    Ok(())
}

/// resolv.conf for `dns`; `None` copies the host's, as CRI does.
pub fn resolv_conf(dns: Option<&Dns>) -> String {
    let Some(dns) = dns else {
        return std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        let _ = writeln!(out, "search {}", dns.searches.join(" "));
    }
    for s in &dns.servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !dns.options.is_empty() {
        let _ = writeln!(out, "options {}", dns.options.join(" "));
    }
    out
}

/// The hosts file: the host's for host networking, else the pod default.
pub fn hosts(network: &Network) -> String {
    if *network == Network::Host {
        if let Ok(s) = std::fs::read_to_string("/etc/hosts") {
            return s;
        }
    }
    POD_HOSTS.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv() {
        let dns = Dns {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert!(check_dns(&dns).is_ok());
        assert_eq!(
            resolv_conf(Some(&dns)),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n"
        );
    }

    #[test]
    fn bad_dns() {
        let mut dns = Dns {
            servers: vec!["not-an-ip".into()],
            ..Default::default()
        };
        assert!(check_dns(&dns).is_err());
        dns.servers.clear();
        dns.searches = vec!["a b".into()];
        assert!(check_dns(&dns).is_err());
        dns.searches = vec!["a\nnameserver 1.2.3.4".into()];
        assert!(check_dns(&dns).is_err());
    }

    #[test]
    fn hostnames() {
        let pod = PodConfig::default();
        assert_eq!(hostname(&pod, &"x".repeat(76), &Network::New).len(), 63);
        let pod = PodConfig {
            hostname: "web-0".into(),
            ..Default::default()
        };
        assert_eq!(hostname(&pod, "id", &Network::New), "web-0");
    }
}
