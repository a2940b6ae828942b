//! Kafka's compression codecs on a form 2 batch's records: gzip, snappy
//! (raw, or Java's xerial framing), lz4 (the frame format) and zstd. A
//! compressed batch is stored and served as produced; records are
//! decompressed only to read them ([`decompress`]) or to validate them
//! ([`decompressor`], streaming). Every output is capped ([`cap_for`]: 256
//! times the compressed size, at least 1 MiB, at most
//! [`DECOMPRESSED_BYTES_MAX`]): a small hostile batch cannot make the broker
//! hold or churn through more.

use super::BatchError;
use bytes::Bytes;
use std::io::{self, Read};

/// Most bytes a batch's records may decompress to.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;
/// Most bytes a batch's records may decompress to per compressed byte
/// (above [`DECOMPRESSED_FLOOR`]): the work a request makes the broker do
/// stays proportional to its size (a 2 KiB zstd frame of zeros otherwise
/// costs 64 MiB of decompression, and a request can carry thousands).
pub const RATIO_MAX: usize = 256;
/// What any batch may decompress to, whatever its ratio.
pub const DECOMPRESSED_FLOOR: usize = 1 << 20;

/// The output cap of a batch whose records take `compressed` bytes.
pub fn cap_for(compressed: usize) -> usize {
    compressed.saturating_mul(RATIO_MAX).clamp(DECOMPRESSED_FLOOR, DECOMPRESSED_BYTES_MAX)
}

/// A codec, from a batch's attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of attribute bits 0-2 (`UnsupportedCodec` for 5-7).
    pub fn from_bits(bits: u16) -> Result<Codec, BatchError> {
        match bits & super::attributes::CODEC_MASK {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(BatchError::UnsupportedCodec(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

fn failed(codec: Codec, e: impl std::fmt::Display) -> BatchError {
    BatchError::Decompress { codec: codec.name(), reason: e.to_string() }
}

/// The xerial snappy framing Java's clients write: a magic header, then
/// blocks of (big-endian u32 length, raw snappy block).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Reads the decompressed bytes of `compressed`, failing once more than
/// `cap` come out (or the input is not valid for the codec).
pub fn decompressor<'a>(codec: Codec, compressed: &'a [u8], cap: usize) -> Result<Box<dyn Read + 'a>, BatchError> {
    let inner: Box<dyn Read + 'a> = match codec {
        Codec::None => Box::new(compressed),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Codec::Snappy if compressed.starts_with(XERIAL_MAGIC) => {
            Box::new(Xerial { rest: compressed.get(XERIAL_HEADER_LEN..).unwrap_or_default(), block: Vec::new(), at: 0, cap })
        }
        Codec::Snappy => {
            let len = snap::raw::decompress_len(compressed).map_err(|e| failed(codec, e))?;
            if len > cap {
                return Err(BatchError::DecompressedTooLarge { max: cap });
            }
            let raw = snap::raw::Decoder::new().decompress_vec(compressed).map_err(|e| failed(codec, e))?;
            Box::new(io::Cursor::new(raw))
        }
        Codec::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(compressed)),
        Codec::Zstd => Box::new(Zstd { rest: compressed, frame: None }),
    };
    Ok(Box::new(Capped { inner, left: cap, codec }))
}

/// The whole decompressed records area of a batch, at most `cap` bytes.
pub fn decompress(codec: Codec, compressed: &[u8], cap: usize) -> Result<Bytes, BatchError> {
    let mut out = Vec::new();
    decompressor(codec, compressed, cap)?.read_to_end(&mut out).map_err(|e| from_io(codec, e, cap))?;
    Ok(Bytes::from(out))
}

/// The error a read of decompressed bytes failed with.
pub(super) fn from_io(codec: Codec, e: io::Error, cap: usize) -> BatchError {
    if e.kind() == io::ErrorKind::FileTooLarge { BatchError::DecompressedTooLarge { max: cap } } else { failed(codec, e) }
}

/// Fails a read that would pass the output cap.
struct Capped<'a> {
    inner: Box<dyn Read + 'a>,
    left: usize,
    codec: Codec,
}

impl Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Anything more is past the cap; nothing more is a clean end.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("{} output past the cap", self.codec.name()))),
            };
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

/// Java's xerial snappy framing, one block decompressed at a time.
struct Xerial<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    at: usize,
    cap: usize,
}

impl Read for Xerial<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if self.rest.is_empty() {
                return Ok(0);
            }
            let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
            let head: [u8; 4] = self.rest.get(..4).and_then(|h| h.try_into().ok()).ok_or_else(|| bad("a truncated xerial block length"))?;
            let len = u32::from_be_bytes(head) as usize;
            let block = self.rest.get(4..4 + len).ok_or_else(|| bad("a xerial block longer than the batch"))?;
            self.rest = &self.rest[4 + len..];
            let size = snap::raw::decompress_len(block).map_err(|e| bad(&e.to_string()))?;
            if size > self.cap {
                return Err(io::Error::new(io::ErrorKind::FileTooLarge, "a snappy block past the cap"));
            }
            self.block.resize(size, 0);
            let n = snap::raw::Decoder::new().decompress(block, &mut self.block).map_err(|e| bad(&e.to_string()))?;
            self.block.truncate(n);
            self.at = 0;
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// zstd: one frame after another, as concatenated frames decode.
struct Zstd<'a> {
    rest: &'a [u8],
    frame: Option<ruzstd::decoding::StreamingDecoder<&'a [u8], ruzstd::decoding::FrameDecoder>>,
}

impl Read for Zstd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.rest = self.frame.take().map(|f| f.into_inner()).unwrap_or_default();
            }
            if self.rest.is_empty() {
                return Ok(0);
            }
            let frame = ruzstd::decoding::StreamingDecoder::new(self.rest)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.frame = Some(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn records() -> Vec<u8> {
        (0..2000u32).flat_map(|i| format!("record {i} of many, compressible; ").into_bytes()).collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xerial(data: &[u8]) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in data.chunks(8192) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    /// A zstd frame of raw blocks (the format's simplest form; ruzstd
    /// only decodes): magic, a descriptor with a single segment and a
    /// 4-byte content size, then raw blocks of at most 128 KiB.
    fn zstd_raw(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0b1010_0000];
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let chunks: Vec<&[u8]> = data.chunks(128 << 10).collect();
        for (i, c) in chunks.iter().enumerate() {
            let last = u32::from(i + 1 == chunks.len());
            let header = last | ((c.len() as u32) << 3);
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.extend_from_slice(c);
        }
        out
    }

    #[test]
    fn every_codec_decompresses_what_it_compressed() {
        let data = records();
        let cases = [
            (Codec::Gzip, gzip(&data)),
            (Codec::Snappy, snap::raw::Encoder::new().compress_vec(&data).unwrap()),
            (Codec::Snappy, xerial(&data)),
            (Codec::Lz4, lz4(&data)),
            (Codec::Zstd, zstd_raw(&data)),
            (Codec::Zstd, [zstd_raw(&data[..100]), zstd_raw(&data[100..])].concat()),
            (Codec::None, data.clone()),
        ];
        for (codec, compressed) in cases {
            assert_eq!(decompress(codec, &compressed, DECOMPRESSED_BYTES_MAX).unwrap(), data, "{codec:?}");
        }
    }

    #[test]
    fn output_past_the_cap_and_garbage_are_refused() {
        let zeros = vec![0u8; 1 << 20];
        for (codec, compressed) in [
            (Codec::Gzip, gzip(&zeros)),
            (Codec::Snappy, snap::raw::Encoder::new().compress_vec(&zeros).unwrap()),
            (Codec::Snappy, xerial(&zeros)),
            (Codec::Lz4, lz4(&zeros)),
            (Codec::Zstd, zstd_raw(&zeros)),
        ] {
            assert!(compressed.len() < zeros.len() || codec == Codec::Zstd);
            assert_eq!(decompress(codec, &compressed, 1000), Err(BatchError::DecompressedTooLarge { max: 1000 }), "{codec:?}");
            assert_eq!(decompress(codec, &compressed, 1 << 20).unwrap().len(), 1 << 20, "exactly the cap is fine: {codec:?}");
            let mut torn = compressed.clone();
            torn.truncate(compressed.len() / 2);
            assert!(decompress(codec, &torn, DECOMPRESSED_BYTES_MAX).is_err(), "{codec:?} torn");
        }
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            assert!(decompress(codec, b"not compressed at all", 1 << 20).is_err(), "{codec:?}");
        }
        assert_eq!(Codec::from_bits(5), Err(BatchError::UnsupportedCodec(5)));
    }

    #[test]
    fn the_cap_grows_with_the_compressed_size_within_bounds() {
        assert_eq!(cap_for(0), DECOMPRESSED_FLOOR);
        assert_eq!(cap_for(2048), DECOMPRESSED_FLOOR, "a 2 KiB bomb gets 1 MiB");
        assert_eq!(cap_for(16 << 10), 4 << 20);
        assert_eq!(cap_for(1 << 20), DECOMPRESSED_BYTES_MAX);
        assert_eq!(cap_for(usize::MAX), DECOMPRESSED_BYTES_MAX);
    }
}
