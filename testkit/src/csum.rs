//! The Internet checksum (RFC 1071), computed independently of the code under test.

/// One's-complement sum (not folded) of `b` as big-endian 16-bit words; an odd
/// last byte is padded with zero.
pub fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Folds a sum to 16 bits (end-around carry), not complemented.
pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksum to store for data whose sum is `s`: the folded sum, complemented.
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// The checksum of `b` (to store in a zeroed checksum field).
pub fn checksum(b: &[u8]) -> u16 {
    finish(sum16(b))
}

/// Sum of the IPv4 pseudo header for an L4 segment of `len` bytes.
pub fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    sum16(&src) + sum16(&dst) + u32::from(proto) + len as u32
}

/// Sum of the IPv6 pseudo header (RFC 8200 8.1) for upper-layer data of
/// `len` bytes with Next Header `proto`.
pub fn pseudo_sum6(src: [u8; 16], dst: [u8; 16], proto: u8, len: usize) -> u32 {
    sum16(&src) + sum16(&dst) + (len as u32 >> 16) + (len as u32 & 0xffff) + u32::from(proto)
}

/// Whether data carrying its own checksum verifies (its sum folds to 0xffff).
pub fn verifies(s: u32) -> bool {
    fold(s) == 0xffff
}

/// Rewrites the checksum of the IPv4 header at `f[at..]` (its length from IHL).
pub fn fix_ipv4(f: &mut [u8], at: usize) {
    let hl = usize::from(f[at] & 0x0f) * 4;
    f[at + 10..at + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&f[at..at + hl]);
    f[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_verification() {
        // RFC 1071 section 3: the sum of these words is ddf2 (folded).
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(&b)), 0xddf2);
        assert_eq!(checksum(&b), !0xddf2);
        let mut with = b.to_vec();
        with.extend_from_slice(&checksum(&b).to_be_bytes());
        assert!(verifies(sum16(&with)));
        with[0] ^= 1;
        assert!(!verifies(sum16(&with)));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum16(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_fix() {
        let mut f = vec![0u8; 4];
        f.extend_from_slice(&[0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0xaa, 0xbb]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        fix_ipv4(&mut f, 4);
        assert!(verifies(sum16(&f[4..])));
    }
}
