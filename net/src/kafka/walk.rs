//! A request body walked against its schema before the crate decodes it:
//! every array count is checked against the bytes left (each entry takes
//! at least its schema's smallest encoding), so a count the frame cannot
//! hold is refused before anything is allocated for it, at any depth.

/// One field of a request body, as its version encodes it.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A fixed-size field of this many bytes (ints, bools, uuids).
    Fixed(usize),
    /// A string (nullable or not: the walk reads the length either way).
    Str,
    /// Bytes (nullable or not).
    Bytes,
    /// An array of entries of these fields (nullable or not).
    Array(&'static [Field]),
    /// Tagged fields (flexible versions only; nothing otherwise).
    Tagged,
}

/// Walks `body` against `schema` (`flexible`: the version uses compact
/// lengths and tagged fields). Trailing bytes are left to the decoder.
pub fn walk(body: &[u8], schema: &[Field], flexible: bool) -> Result<(), String> {
    let mut b = body;
    fields(&mut b, schema, flexible, 0)
}

/// Most entries of one array in a request this build answers (topics of
/// a Metadata or admin request; Kafka's own clients send far fewer).
pub const ARRAY_ENTRIES_MAX: usize = 10_000;

/// Array and struct nesting a schema may have.
const DEPTH_MAX: usize = 8;

fn fields(b: &mut &[u8], schema: &[Field], flexible: bool, depth: usize) -> Result<(), String> {
    if depth > DEPTH_MAX {
        return Err("a request nested deeper than any schema".to_owned());
    }
    for f in schema {
        match *f {
            Field::Fixed(n) => skip(b, n)?,
            Field::Str | Field::Bytes => {
                let n = length(b, flexible, !matches!(f, Field::Str))?;
                skip(b, n.unwrap_or(0))?;
            }
            Field::Array(entry) => {
                let Some(count) = array_length(b, flexible)? else { continue };
                let least = min_size(entry, flexible).max(1);
                if count.saturating_mul(least) > b.len() {
                    return Err(format!("an array of {count} entries in {} bytes", b.len()));
                }
                // Tiny entries decode into far larger values (a 2-byte name
                // into a String): the count itself is bounded too.
                if count > ARRAY_ENTRIES_MAX {
                    return Err(format!("an array of {count} entries: at most {ARRAY_ENTRIES_MAX} are taken"));
                }
                for _ in 0..count {
                    fields(b, entry, flexible, depth + 1)?;
                }
            }
            Field::Tagged if flexible => {
                let count = uvarint(b)? as usize;
                if count > b.len() {
                    return Err(format!("{count} tagged fields in {} bytes", b.len()));
                }
                for _ in 0..count {
                    uvarint(b)?;
                    let size = uvarint(b)? as usize;
                    skip(b, size)?;
                }
            }
            Field::Tagged => {}
        }
    }
    Ok(())
}

/// The fewest bytes an entry of `schema` takes.
fn min_size(schema: &[Field], flexible: bool) -> usize {
    schema
        .iter()
        .map(|f| match f {
            Field::Fixed(n) => *n,
            Field::Str => {
                if flexible {
                    1
                } else {
                    2
                }
            }
            Field::Bytes | Field::Array(_) => {
                if flexible {
                    1
                } else {
                    4
                }
            }
            Field::Tagged => usize::from(flexible),
        })
        .sum()
}

fn skip(b: &mut &[u8], n: usize) -> Result<(), String> {
    if n > b.len() {
        return Err(format!("the request ends {} bytes short", n - b.len()));
    }
    *b = &b[n..];
    Ok(())
}

/// A string's (i16, or compact) or bytes' (i32, or compact) length; `None`
/// for null.
fn length(b: &mut &[u8], flexible: bool, wide: bool) -> Result<Option<usize>, String> {
    if flexible {
        return Ok(match uvarint(b)? {
            0 => None,
            n => Some(n as usize - 1),
        });
    }
    let n = if wide {
        let v = b.get(..4).ok_or("the request ends inside a length")?;
        let n = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        skip(b, 4)?;
        i64::from(n)
    } else {
        let v = b.get(..2).ok_or("the request ends inside a length")?;
        let n = i16::from_be_bytes([v[0], v[1]]);
        skip(b, 2)?;
        i64::from(n)
    };
    Ok(usize::try_from(n).ok())
}

fn array_length(b: &mut &[u8], flexible: bool) -> Result<Option<usize>, String> {
    length(b, flexible, true)
}

/// An unsigned varint (at most 5 bytes: a u32).
pub fn uvarint(b: &mut &[u8]) -> Result<u32, String> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some((&byte, rest)) = b.split_first() else { return Err("the request ends inside a varint".to_owned()) };
        *b = rest;
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 5 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Field::*;

    const TOPIC: &[Field] = &[Str, Fixed(4), Array(&[Fixed(4)]), Tagged];

    #[test]
    fn counts_are_checked_at_every_depth() {
        // One topic "ab", 7, an array of two ints.
        let ok = [0, 0, 0, 1, 0, 2, b'a', b'b', 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(walk(&ok, &[Array(TOPIC)], false), Ok(()));
        let mut nested = ok;
        nested[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(walk(&nested, &[Array(TOPIC)], false).unwrap_err().contains("entries"), "a nested count");
        let top = [0x7f, 0xff, 0xff, 0xff];
        assert!(walk(&top, &[Array(TOPIC)], false).unwrap_err().contains("entries"));
        assert_eq!(walk(&[0xff, 0xff, 0xff, 0xff], &[Array(TOPIC)], false), Ok(()), "a null array");
        // Flexible: compact lengths and tagged fields.
        let flex = [2, 3, b'a', b'b', 0, 0, 0, 7, 3, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 4, b'x', b'y', b'z', b'w', 0];
        assert_eq!(walk(&flex, &[Array(TOPIC), Tagged], true), Ok(()));
        assert!(walk(&flex[..10], &[Array(TOPIC), Tagged], true).is_err(), "cut short");
        assert!(walk(&[0xff, 0xff, 0xff, 0xff, 0x0f], &[Array(TOPIC)], true).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_walk_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128), flexible: bool) {
            let _ = walk(&bytes, &[Array(TOPIC), Array(&[Str, Bytes, Array(&[Array(&[Fixed(1)])])]), Tagged], flexible);
        }
    }
}
