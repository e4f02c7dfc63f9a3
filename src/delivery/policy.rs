//! Webhook target policy: which hosts and addresses a job may make apsched call (`[webhooks] allow` / `deny`).
//!
//! Entries are CIDRs (`10.0.0.0/8`, `fd00::/8`), single addresses, or host patterns (`reports.internal`,
//! `*.internal`, which matches any name under `internal`; `*`, any name). A target is refused when its host or any of its addresses
//! is denied — the built-in deny list (link-local and cloud metadata) always applies; when `allow` is not empty, a
//! target must also match it (its host a pattern, or every address a CIDR). Deny wins over allow.
//!
//! Checked when a job is saved (the URL's host: a literal address, or a name against the patterns) and at every
//! delivery: a literal address before sending, a name by `PolicyResolver`, which resolves it and drops the
//! denied addresses before any connection is made — so a name that later resolves elsewhere (DNS rebinding)
//! still cannot reach a denied address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use super::WebhookSettings;

/// Link-local (where cloud metadata services live), "this network", and AWS's IPv6 metadata address.
pub const DEFAULT_DENY: [&str; 4] = ["0.0.0.0/8", "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    /// `*`: every name (with `deny`, only literal addresses may be called).
    Any,
    Exact(String),
    /// `*.internal` → `.internal`: any name ending so (not `internal` itself).
    Suffix(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => host == *name,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Rules {
    nets: Vec<IpNet>,
    hosts: Vec<HostPattern>,
}

impl Rules {
    fn parse(entries: &[String], key: &str) -> Result<Rules, (String, String)> {
        let mut rules = Rules::default();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                rules.nets.push(net.trunc());
            } else if let Ok(addr) = entry.parse::<IpAddr>() {
                rules.nets.push(IpNet::from(addr.to_canonical()));
            } else if entry == "*" {
                rules.hosts.push(HostPattern::Any);
            } else {
                let pattern = entry.to_ascii_lowercase();
                let (name, wildcard) = match pattern.strip_prefix("*.") {
                    Some(rest) => (rest, true),
                    None => (pattern.as_str(), false),
                };
                let valid = !name.is_empty()
                    && name.split('.').all(|label| {
                        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                if !valid {
                    return Err((
                        format!("{key}[{i}]"),
                        format!("{entry:?} is neither a CIDR, an address, nor a host pattern such as *.internal"),
                    ));
                }
                rules.hosts.push(if wildcard {
                    HostPattern::Suffix(format!(".{name}"))
                } else {
                    HostPattern::Exact(name.to_string())
                });
            }
        }
        Ok(rules)
    }

    fn net_of(&self, addr: IpAddr) -> Option<&IpNet> {
        self.nets.iter().find(|net| net.contains(&addr))
    }

    fn host_matches(&self, host: &str) -> bool {
        self.hosts.iter().any(|pattern| pattern.matches(host))
    }

    fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }
}

/// Which addresses webhooks may call: `[webhooks] allow` and `deny` over the built-in deny list.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allow: Rules,
    deny: Rules,
}

impl TargetPolicy {
    /// The policy of `[webhooks]`; an error names the entry (`allow[2]`) and what is wrong with it.
    pub fn from_config(settings: &WebhookSettings) -> Result<TargetPolicy, (String, String)> {
        let defaults: Vec<String> = DEFAULT_DENY.iter().map(|entry| entry.to_string()).collect();
        let mut deny = Rules::parse(&defaults, "deny")?;
        let configured = Rules::parse(&settings.deny, "deny")?;
        deny.nets.extend(configured.nets);
        deny.hosts.extend(configured.hosts);
        Ok(TargetPolicy { allow: Rules::parse(&settings.allow, "allow")?, deny })
    }

    /// A host name (not an address) against the patterns; its addresses are checked when it is resolved.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        if self.deny.host_matches(host) {
            return Err(format!("host {host:?} is denied by the webhook target policy"));
        }
        if !self.allow.is_empty() && self.allow.nets.is_empty() && !self.allow.host_matches(host) {
            return Err(format!("host {host:?} is not in the webhook target policy's allow list"));
        }
        Ok(())
    }

    /// One address a request would connect to; `host_allowed` says the name it came from matched an allowed
    /// pattern (which then stands in for the allowed CIDRs, but never overrides a deny).
    pub fn check_addr(&self, addr: IpAddr, host_allowed: bool) -> Result<(), String> {
        let addr = addr.to_canonical();
        if let Some(net) = self.deny.net_of(addr) {
            return Err(format!("address {addr} is denied by the webhook target policy ({net})"));
        }
        if !self.allow.is_empty() && !host_allowed && self.allow.net_of(addr).is_none() {
            return Err(format!("address {addr} is not in the webhook target policy's allow list"));
        }
        Ok(())
    }

    /// A URL's host, as far as it can be checked without DNS: a literal address fully, a name by pattern. Used when
    /// a job is saved and before each delivery (a literal address never reaches the resolver).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        self.check_parsed(&parse_url(url)?)
    }

    /// `check_url` for a URL already parsed: a delivery parses its target once, for the policy and the request.
    pub fn check_parsed(&self, url: &reqwest::Url) -> Result<(), String> {
        let host = url.host_str().ok_or_else(|| "the URL has no host".to_string())?;
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(addr) => self.check_addr(addr, false),
            Err(_) => self.check_host(host),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allow.host_matches(host)
    }
}

/// A webhook URL, parsed, or why it is not one.
pub fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))
}

/// reqwest's resolver for deliveries: the system resolver, then the policy over every address it returned. Only
/// allowed addresses are handed to the connector; none left is an error naming why.
pub(crate) struct PolicyResolver {
    policy: Arc<TargetPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<TargetPolicy>) -> PolicyResolver {
        PolicyResolver { policy }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            policy.check_host(&host)?;
            let host_allowed = policy.host_allowed(&host);
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusals = Vec::new();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check_addr(addr.ip(), host_allowed) {
                    Ok(()) => true,
                    Err(reason) => {
                        refusals.push(reason);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = if refusals.is_empty() { "no addresses".to_string() } else { refusals.join("; ") };
                return Err(format!("target policy: {host} resolves to no allowed address: {reason}").into());
            }
            if !refusals.is_empty() {
                tracing::warn!(host = %host, refused = %refusals.join("; "), "some resolved addresses are denied");
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> TargetPolicy {
        let config = WebhookSettings {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            ..WebhookSettings::default()
        };
        TargetPolicy::from_config(&config).unwrap()
    }

    #[test]
    fn the_default_denies_link_local_and_metadata_and_allows_the_rest() {
        let p = policy(&[], &[]);
        assert!(p.check_url("http://169.254.169.254/latest/meta-data").is_err());
        assert!(p.check_url("http://[fd00:ec2::254]/").is_err());
        assert!(p.check_url("http://[fe80::1]/").is_err());
        assert!(p.check_url("http://0.0.0.0:80/").is_err());
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert!(p.check_url("http://[::ffff:169.254.169.254]/").is_err());
        // Numeric spellings of an IPv4 address are normalised by the URL parser before the check.
        assert!(p.check_url("http://0xa9fea9fe/").is_err());
        assert!(p.check_url("http://2852039166/").is_err());
        assert!(p.check_url("http://169.254.43518/").is_err());
        assert!(p.check_url("http://127.0.0.1:9/").is_ok());
        assert!(p.check_url("http://10.1.2.3/").is_ok());
        assert!(p.check_url("https://reports.internal/run").is_ok());
    }

    #[test]
    fn configured_denies_add_to_the_defaults_and_patterns_match_names() {
        let p = policy(&[], &["127.0.0.2/32", "*.internal", "localhost"]);
        assert!(p.check_url("http://127.0.0.2/").is_err());
        assert!(p.check_url("http://127.0.0.1/").is_ok());
        assert!(p.check_url("http://a.b.internal/").is_err());
        assert!(p.check_url("http://internal/").is_ok());
        assert!(p.check_url("http://LOCALHOST./").is_err());
        assert!(p.check_url("http://169.254.1.1/").is_err());
        let literal_only = policy(&[], &["*"]);
        assert!(literal_only.check_url("http://example.com/").is_err());
        assert!(literal_only.check_url("http://127.0.0.1/").is_ok());
    }

    #[test]
    fn an_allow_list_limits_targets_but_never_overrides_a_deny() {
        let p = policy(&["10.0.0.0/8", "*.corp"], &["10.9.0.0/16"]);
        assert!(p.check_url("http://10.1.1.1/").is_ok());
        assert!(p.check_url("http://10.9.1.1/").is_err());
        assert!(p.check_url("http://192.168.1.1/").is_err());
        assert!(p.check_addr("10.9.0.1".parse().unwrap(), true).is_err());
        assert!(p.check_addr("192.168.1.1".parse().unwrap(), true).is_ok());
        assert!(p.check_addr("192.168.1.1".parse().unwrap(), false).is_err());
        let names_only = policy(&["*.corp"], &[]);
        assert!(names_only.check_url("http://x.corp/").is_ok());
        assert!(names_only.check_url("http://x.org/").is_err());
    }

    #[test]
    fn bad_entries_are_named() {
        let config = WebhookSettings { allow: vec!["10.0.0.0/8".into(), "not a host!".into()], ..Default::default() };
        assert_eq!(TargetPolicy::from_config(&config).unwrap_err().0, "allow[1]");
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_a_denied_address() {
        use reqwest::dns::Resolve;
        let resolver = PolicyResolver::new(Arc::new(policy(&[], &["127.0.0.0/8", "::1/128"])));
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = resolver.resolve(name).await.err().expect("localhost is denied").to_string();
        assert!(err.contains("no allowed address"), "{err}");
        let open = PolicyResolver::new(Arc::new(policy(&[], &[])));
        let addrs: Vec<SocketAddr> = open.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback()) && !addrs.is_empty());
    }
}
