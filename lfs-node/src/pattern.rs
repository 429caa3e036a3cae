//! The seeded byte pattern of `fill` and `verify`: 8-byte words of splitmix64(seed, word index),
//! so any range can be produced or checked on its own.

fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern bytes of file offsets `pos..pos+buf.len()`.
pub fn fill(seed: u64, pos: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let at = pos + i as u64;
        let w = word(seed, at / 8).to_le_bytes();
        let k = (at % 8) as usize;
        let n = (8 - k).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&w[k..k + n]);
        i += n;
    }
}

/// Offset (relative to `pos`) of the first byte of `data` that differs from the pattern.
pub fn first_mismatch(seed: u64, pos: u64, data: &[u8]) -> Option<usize> {
    let mut expect = vec![0u8; data.len()];
    fill(seed, pos, &mut expect);
    data.iter().zip(&expect).position(|(a, b)| a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_agree() {
        let mut whole = vec![0u8; 100];
        fill(7, 0, &mut whole);
        let mut part = vec![0u8; 33];
        fill(7, 13, &mut part);
        assert_eq!(&whole[13..46], &part[..]);
        assert_eq!(first_mismatch(7, 13, &part), None);
        part[5] ^= 1;
        assert_eq!(first_mismatch(7, 13, &part), Some(5));
        let mut other = vec![0u8; 100];
        fill(8, 0, &mut other);
        assert_ne!(whole, other);
    }
}
