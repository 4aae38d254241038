//! Unsigned LEB128 varints (at most 10 bytes, canonical only) and zigzag.

/// The longest varint of a u64.
pub(super) const VARINT_BYTES_MAX: usize = 10;

/// Appends `value` as a varint: 7 bits per byte, least significant group first, the top
/// bit set on every byte but the last. Callers reserve capacity first.
#[inline(always)]
pub(super) fn put(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push(value as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// How many bytes [`put`] writes for `value` (1..=10).
#[cfg(test)]
pub(super) fn len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline(always)]
pub(super) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline(always)]
pub(super) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Why a varint could not be read; the caller adds the transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VarintFault {
    /// The input ends before the varint's last byte.
    Truncated,
    /// More than 10 bytes, or a 10th byte above 1: the value does not fit a u64.
    Overflow,
    /// A last byte of 0 after at least one other byte: a shorter encoding exists.
    Overlong,
}

/// Reads the varint at the start of `bytes`: `(value, bytes consumed)`.
#[inline(always)]
pub(super) fn get(bytes: &[u8]) -> Result<(u64, usize), VarintFault> {
    match bytes.first() {
        Some(&b) if b < 0x80 => Ok((u64::from(b), 1)),
        _ => get_long(bytes),
    }
}

/// [`get`] for varints of two bytes or more (or none). Inlined: balances are mostly
/// multi-byte, and the call cost as much as the decoding.
#[inline(always)]
fn get_long(bytes: &[u8]) -> Result<(u64, usize), VarintFault> {
    // Fast path: eight bytes at once, when the input has them.
    if let Some(word) = bytes.first_chunk::<8>() {
        let word = u64::from_le_bytes(*word);
        let stops = !word & 0x8080_8080_8080_8080;
        if stops != 0 {
            // The varint ends in byte `n - 1` (n = 2..=8: byte 0 has its top bit set).
            let n = (stops.trailing_zeros() as usize + 1) / 8;
            let last_byte = (word >> ((n - 1) * 8)) as u8;
            if last_byte == 0 {
                return Err(VarintFault::Overlong);
            }
            let kept = if n == 8 {
                word
            } else {
                word & ((1u64 << (n * 8)) - 1)
            };
            return Ok((compact(kept & 0x7f7f_7f7f_7f7f_7f7f), n));
        }
    }
    get_slow(bytes)
}

/// Packs the low 7 bits of each of the eight bytes of `x` (top bits already clear) into
/// one 56-bit value, byte 0 lowest.
#[inline(always)]
fn compact(x: u64) -> u64 {
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4)
}

/// Byte by byte: short inputs and varints of 9 or 10 bytes.
#[cold]
fn get_slow(bytes: &[u8]) -> Result<(u64, usize), VarintFault> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(VARINT_BYTES_MAX).enumerate() {
        if i == VARINT_BYTES_MAX - 1 && b > 1 {
            return Err(VarintFault::Overflow);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if b == 0 && i > 0 {
                return Err(VarintFault::Overlong);
            }
            return Ok((value, i + 1));
        }
    }
    if bytes.len() < VARINT_BYTES_MAX {
        Err(VarintFault::Truncated)
    } else {
        // Unreachable: a 10th byte is either > 1 or ends the varint. Kept total.
        Err(VarintFault::Overflow)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn encode(value: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        put(&mut buf, value);
        buf
    }

    #[test]
    fn round_trips_at_every_length_boundary_with_and_without_slack() {
        let mut values = vec![0, 1, u64::MAX, u64::MAX - 1, 1 << 63];
        for k in 1..64 {
            values.extend([(1u64 << k) - 1, 1u64 << k, (1u64 << k) + 1]);
        }
        for value in values {
            let bytes = encode(value);
            assert_eq!(bytes.len(), len(value), "{value}");
            assert_eq!(get(&bytes), Ok((value, bytes.len())), "{value}");
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xff; 12]);
            assert_eq!(get(&padded), Ok((value, bytes.len())), "{value} padded");
            for cut in 0..bytes.len() {
                assert_eq!(
                    get(&bytes[..cut]),
                    Err(VarintFault::Truncated),
                    "{value} {cut}"
                );
            }
        }
    }

    #[test]
    fn rejects_overlong_and_overflowing_encodings() {
        for tail in [&[][..], &[0xff; 12][..]] {
            let with = |bytes: &[u8]| [bytes, tail].concat();
            assert_eq!(get(&with(&[0x80, 0x00])), Err(VarintFault::Overlong));
            assert_eq!(get(&with(&[0xff, 0x80, 0x00])), Err(VarintFault::Overlong));
            let mut ten = vec![0xff; 9];
            ten.push(0x02);
            assert_eq!(get(&with(&ten)), Err(VarintFault::Overflow));
            ten[9] = 0x80;
            assert_eq!(get(&with(&ten)), Err(VarintFault::Overflow));
            ten[9] = 0x00;
            assert_eq!(get(&with(&ten)), Err(VarintFault::Overlong));
            ten[9] = 0x01;
            assert_eq!(get(&with(&ten)), Ok((u64::MAX, 10)));
        }
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_codes() {
        for (value, code) in [(0, 0), (-1, 1), (1, 2), (-2, 3), (i64::MAX, u64::MAX - 1)] {
            assert_eq!(zigzag(value), code);
            assert_eq!(unzigzag(code), value);
        }
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        assert_eq!(unzigzag(u64::MAX), i64::MIN);
    }
}
