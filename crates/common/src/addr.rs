//! One spelling per address. A dual-stack socket (`[::]`, see `transport::endpoint`) sees an
//! IPv4 peer as the v4-mapped IPv6 address `::ffff:1.2.3.4`; everywhere an address is
//! compared, counted (leaves per IP), stored (hits, provider lists) or shown, it is first made
//! [`canonical`], so the same host is one address whichever socket it came through.

use std::net::{IpAddr, SocketAddr};

/// `addr` with a v4-mapped IPv6 address made plain IPv4 (`[::ffff:1.2.3.4]:5` → `1.2.3.4:5`).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// `ip` with a v4-mapped IPv6 address made plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4_and_others_stay() {
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:5".parse().unwrap();
        assert_eq!(canonical(mapped), "1.2.3.4:5".parse().unwrap());
        for same in ["1.2.3.4:5", "[::1]:5", "[2001:db8::1]:5", "[::]:5"] {
            let addr: SocketAddr = same.parse().unwrap();
            assert_eq!(canonical(addr), addr);
        }
    }
}
