//! What a home router does to traffic, as an nftables ruleset loaded into its namespace.
//!
//! The router has a WAN interface `wan` on the public segment and a LAN bridge `lan`. The
//! kinds are those of RFC 4787 (mapping × filtering):
//!
//! * Endpoint-independent mapping (EIM, the three "cone" kinds): plain `snat` keeps an inside
//!   port only while no other conntrack entry holds it, so it is not a mapping. Here two
//!   dynamic maps hold the mapping: `ext` (inside ip.port → outside ip.port) is looked up
//!   first for every new outbound UDP flow, so an inside endpoint keeps its outside port
//!   towards every destination; `back` (outside port → inside ip.port) DNATs a new inbound
//!   flow to a mapped port back inside. Both are filled after NAT from the conntrack entry of
//!   flows that started inside, and refreshed by every outbound packet ([`MAPPING_TIMEOUT_SECS`]).
//!   A new mapping keeps the inside port when no other endpoint holds it (each LAN host gets
//!   its own ephemeral port range, see `Home::host`, so only a fixed port bound on two hosts
//!   of one home can clash); otherwise it gets a random port from [`SPARE_PORTS`], below every
//!   host's range.
//! * Filtering: full cone lets in any new flow to a mapped port; address-restricted only from
//!   an address the inside endpoint sent to; port-restricted only from an address and port it
//!   sent to (the `seen` set, filled by outbound packets, with the same timeout).
//! * Symmetric (address-and-port-dependent mapping): `masquerade random`, a fresh random
//!   outside port for every new flow; replies only (conntrack).
//! * Firewall: no NAT (the LAN has public addresses, routed to the router), replies only.
//!
//! Every kind drops unsolicited traffic to the router itself. TCP gets a port-keeping `snat`
//! (not the EIM maps) in the three cone kinds.

use std::net::Ipv4Addr;

/// How long an idle mapping (and a `seen` entry) lives without outbound traffic refreshing it.
pub const MAPPING_TIMEOUT_SECS: u32 = 120;

/// Outside ports given to an inside endpoint whose own port another endpoint of the home
/// already maps (a random one each time; two such endpoints may, rarely, draw the same).
pub const SPARE_PORTS: &str = "1024-19999";

/// Most mappings, and most `seen` entries, a router holds (further ones are not recorded).
pub const MAX_MAPPINGS: u32 = 65_535;

/// The behaviour of a home router (RFC 4787 names in the variant docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nat {
    /// Endpoint-independent mapping and filtering ("full cone"): once an inside endpoint has
    /// sent anything out, anyone can reach it at its mapped address.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering ("restricted cone"): only
    /// addresses the inside endpoint sent to may reach it, from any port.
    AddressRestricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering ("port-restricted
    /// cone"): only the exact address and port it sent to.
    PortRestricted,
    /// Address-and-port-dependent mapping ("symmetric", `masquerade random`): a new outside
    /// port for every destination; only replies get in.
    Symmetric,
    /// No NAT: hosts have public addresses, but a stateful firewall drops every unsolicited
    /// inbound packet.
    Firewall,
}

impl Nat {
    /// Every kind, for matrices.
    pub const ALL: [Nat; 5] = [
        Nat::FullCone,
        Nat::AddressRestricted,
        Nat::PortRestricted,
        Nat::Symmetric,
        Nat::Firewall,
    ];

    /// Whether the router translates addresses (every kind but [`Nat::Firewall`]).
    pub fn translates(self) -> bool {
        self != Nat::Firewall
    }

    /// Whether an inside endpoint keeps one outside port towards every destination.
    pub fn endpoint_independent_mapping(self) -> bool {
        matches!(
            self,
            Nat::FullCone | Nat::AddressRestricted | Nat::PortRestricted
        )
    }

    /// The ruleset for a router whose WAN address is `wan`.
    pub(crate) fn ruleset(self, wan: Ipv4Addr) -> String {
        let mut rules = String::from(
            "table ip kazoo_testnet {\n\
             \tchain input { type filter hook input priority filter; policy accept;\n\
             \t\tiifname \"wan\" ct state established,related accept\n\
             \t\tiifname \"wan\" drop\n\
             \t}\n",
        );
        let seen = match self {
            Nat::AddressRestricted => Some((
                "ipv4_addr . inet_service . ipv4_addr",
                "ip saddr . udp sport . ip daddr",
                "ip daddr . udp dport . ip saddr",
            )),
            Nat::PortRestricted => Some((
                "ipv4_addr . inet_service . ipv4_addr . inet_service",
                "ip saddr . udp sport . ip daddr . udp dport",
                "ip daddr . udp dport . ip saddr . udp sport",
            )),
            _ => None,
        };
        if let Some((key_type, _, _)) = seen {
            rules += &format!(
                "\tset seen {{ type {key_type}; flags dynamic,timeout; \
                 timeout {MAPPING_TIMEOUT_SECS}s; size {MAX_MAPPINGS}; }}\n"
            );
        }
        if self.endpoint_independent_mapping() {
            rules += &format!(
                "\tmap ext {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; \
                 flags dynamic,timeout; timeout {MAPPING_TIMEOUT_SECS}s; size {MAX_MAPPINGS}; }}\n\
                 \tmap back {{ type inet_service : ipv4_addr . inet_service; \
                 flags dynamic,timeout; timeout {MAPPING_TIMEOUT_SECS}s; size {MAX_MAPPINGS}; }}\n\
                 \tchain dstnat {{ type nat hook prerouting priority dstnat; policy accept;\n\
                 \t\tiifname \"wan\" meta l4proto udp dnat ip to udp dport map @back\n\
                 \t}}\n\
                 \tchain srcnat {{ type nat hook postrouting priority srcnat; policy accept;\n\
                 \t\toifname \"wan\" meta l4proto udp snat ip to ip saddr . udp sport map @ext\n\
                 \t\toifname \"wan\" udp sport @back snat ip to {wan}:{SPARE_PORTS} random\n\
                 \t\toifname \"wan\" snat ip to {wan}\n\
                 \t}}\n\
                 \tchain record {{ type filter hook postrouting priority srcnat + 1; policy accept;\n\
                 \t\toifname \"wan\" meta l4proto udp ct direction original \
                 update @ext {{ ct original ip saddr . ct original proto-src : ip saddr . udp sport }}\n\
                 \t\toifname \"wan\" meta l4proto udp ct direction original \
                 update @back {{ udp sport : ct original ip saddr . ct original proto-src }}\n\
                 \t}}\n"
            );
        } else if self == Nat::Symmetric {
            rules += "\tchain srcnat { type nat hook postrouting priority srcnat; policy accept;\n\
                      \t\toifname \"wan\" masquerade random\n\
                      \t}\n";
        }
        rules += "\tchain forward { type filter hook forward priority filter; policy drop;\n";
        if let Some((_, outbound, _)) = seen {
            rules += &format!(
                "\t\tiifname \"lan\" oifname \"wan\" meta l4proto udp update @seen {{ {outbound} }}\n"
            );
        }
        rules += "\t\tct state established,related accept\n\
                  \t\tiifname \"lan\" accept\n";
        match (self, seen) {
            (Nat::FullCone, _) => rules += "\t\tiifname \"wan\" ct status dnat accept\n",
            (_, Some((_, _, inbound))) => {
                rules += &format!("\t\tiifname \"wan\" ct status dnat {inbound} @seen accept\n")
            }
            _ => {}
        }
        rules += "\t}\n}\n";
        rules
    }
}
