//! Which addresses an outgoing request made for a client (a webhook, a push endpoint) may
//! reach: global unicast only, by allowlist. Every block of IANA's IPv4 and IPv6
//! special-purpose address registries (RFC 6890 and its updates) is refused, 240.0.0.0/4
//! included, and the IPv6 forms that carry an IPv4 address (IPv4-mapped and -compatible,
//! NAT64, 6to4) are decoded and their IPv4 address checked again: `64:ff9b::a9fe:a9fe`
//! reaches 169.254.169.254 wherever DNS64/NAT64 runs, as in many VPCs. Teredo (2001::/32)
//! is refused whatever it carries, with the rest of 2001::/23. One function serves
//! registration, the connect-time resolver and IP literals.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a global unicast address that a request made for a client may reach.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_global_v4(v4),
            None => is_global_v6(v6),
        },
    }
}

/// A block as (network, prefix length).
type V4Block = (u32, u32);

/// IANA IPv4 Special-Purpose Address Registry, every entry (global or not: the ones marked
/// globally reachable are anycast services or protocol assignments that a webhook has no
/// business calling), with the multicast and reserved ranges.
const V4_SPECIAL: &[V4Block] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (carrier-grade NAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link local (cloud metadata services)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments (192.0.0.192 and friends)
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, 255.255.255.255 broadcast included
];

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !V4_SPECIAL
        .iter()
        .any(|&(network, prefix)| bits >> (32 - prefix) == network >> (32 - prefix))
}

/// The IPv4 address an IPv6 address stands for, in the forms a network routes to IPv4.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated); :: and ::1 are
        // not IPv4 and are refused below as unspecified and loopback.
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        // 64:ff9b::/96, NAT64's well-known prefix, and 64:ff9b:1::/48, its local-use prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(low),
        // 2002:AABB:CCDD::/48, 6to4: the IPv4 address follows the prefix.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        // Teredo (2001::/32, whose client's IPv4 address is the last 32 bits inverted) is not
        // decoded: it lies in 2001::/23, refused whatever it carries.
        _ => None,
    }
}

/// A block as (network, prefix length).
type V6Block = (u128, u32);

/// IANA IPv6 Special-Purpose Address Registry and the unicast space outside 2000::/3.
const V6_SPECIAL: &[V6Block] = &[
    (0x2001_0000 << 96, 23),           // 2001::/23 IETF protocol assignments
    (0x2001_0db8 << 96, 32),           // 2001:db8::/32 documentation
    (0x3fff_0000 << 96, 20),           // 3fff::/20 documentation
    (0x5f00_0000 << 96, 16),           // 5f00::/16 segment routing SIDs
    (0x0100_0000_0000_0000 << 64, 64), // 100::/64 discard-only
];

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // Global unicast is 2000::/3; everything else (::, ::1, fc00::/7 unique local,
    // fe80::/10 link local, fec0::/10 site local, ff00::/8 multicast, the reserved rest) is not.
    if bits >> 125 != 0b001 {
        return false;
    }
    !V6_SPECIAL
        .iter()
        .any(|&(network, prefix)| bits >> (128 - prefix) == network >> (128 - prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(s: &str) -> bool {
        is_global(s.parse().unwrap())
    }

    #[test]
    fn every_special_purpose_block_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.192",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "100::1",
            "2001::1",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
        ] {
            assert!(!global(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn ipv6_forms_of_internal_ipv4_addresses_are_decoded_and_refused() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2002:c0a8:0101::1",
            // Teredo: client 169.254.169.254 is stored inverted, 5601:5601.
            "2001:0:4136:e378:8000:63bf:5601:5601",
        ] {
            assert!(!global(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn global_unicast_passes_in_every_form() {
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "2a00:1450:4001:82a::200e",
            "2001:200::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(global(ip), "{ip} must pass");
        }
    }
}
