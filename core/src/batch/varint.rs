//! LEB128 varints and zigzag encoding for the record framing inside a batch.
//! Decoding is total: overlong or truncated input is an error, never a panic.

use bytes::BufMut;

/// The longest LEB128 encoding of a u64.
const VARINT_BYTES_MAX: usize = 10;

pub fn put_u64(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

pub fn put_i64(out: &mut impl BufMut, value: i64) {
    put_u64(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Length of `value` encoded as an unsigned varint.
pub fn len_u64(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub fn len_i64(value: i64) -> usize {
    len_u64(((value << 1) ^ (value >> 63)) as u64)
}

/// Reads an unsigned varint from the front of `buf`; returns it and the bytes
/// consumed, or `None` if the input is truncated or longer than ten bytes.
pub fn get_u64(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(VARINT_BYTES_MAX).enumerate() {
        let chunk = u64::from(byte & 0x7f);
        if i == VARINT_BYTES_MAX - 1 && byte > 1 {
            return None; // would overflow 64 bits
        }
        value |= chunk << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub fn get_i64(buf: &[u8]) -> Option<(i64, usize)> {
    let (raw, used) = get_u64(buf)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn u64_round_trips(v: u64) {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            prop_assert_eq!(out.len(), len_u64(v));
            prop_assert_eq!(get_u64(&out), Some((v, out.len())));
        }

        #[test]
        fn i64_round_trips(v: i64) {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            prop_assert_eq!(out.len(), len_i64(v));
            prop_assert_eq!(get_i64(&out), Some((v, out.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = get_u64(&bytes);
            let _ = get_i64(&bytes);
        }
    }

    #[test]
    fn rejects_overlong() {
        assert_eq!(get_u64(&[0xff; 11]), None);
        assert_eq!(get_u64(&[0x80]), None);
        assert_eq!(get_u64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
        assert_eq!(get_u64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Some((u64::MAX, 10)));
    }
}
