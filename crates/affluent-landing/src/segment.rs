//! The on-disk format of a landing segment: a file of blocks, appended and never rewritten in
//! place. A block holds the entries (and rejections) written between two syncs of a writer:
//!
//! ```text
//! header (32 bytes, little endian)
//!   0..4    magic "AFLB"
//!   4       format version (1)
//!   5..8    zero
//!   8..12   length of the metadata section (u32)
//!   12..16  CRC-32 of the metadata section
//!   16..24  length of the body section (u64)
//!   24..28  CRC-32 of the body section
//!   28..32  CRC-32 of bytes 0..28
//! metadata section: zstd of JSON lines, one [`Record`] each
//! body section: zstd of the entries' bodies, concatenated (absent when no entry has a body)
//! ```
//!
//! Listing reads headers and metadata only and seeks over bodies. A block is valid when its
//! header checks and the file holds all of it: a block cut short (a writer killed mid-write) ends
//! the segment's readable part, and since a writer never appends after a failure, nothing valid
//! follows it. Bodies are checked against their CRC when read.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{EntryMeta, LandingError, io};

const MAGIC: &[u8; 4] = b"AFLB";
const VERSION: u8 = 1;
/// Size of a block header.
pub(crate) const HEADER: u64 = 32;
/// zstd level: fast, and JSON compresses well at it.
const ZSTD_LEVEL: i32 = 3;

/// One line of a block's metadata section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    /// An entry; its body is `len` bytes at `offset` of the block's uncompressed body section.
    Entry {
        /// Its metadata.
        meta: Box<EntryMeta>,
        /// Offset in the body section.
        offset: u64,
        /// Body length.
        len: u64,
        /// Its share of the block's bytes on disk.
        stored: u64,
    },
    /// An entry (of this segment or another) turned out not to be data.
    Reject {
        /// The entry.
        entry_id: String,
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
}

/// A block being filled: records and bodies in memory until the writer syncs.
#[derive(Debug, Default)]
pub(crate) struct PendingBlock {
    records: Vec<Record>,
    bodies: Vec<u8>,
}

impl PendingBlock {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held in memory.
    pub(crate) fn size(&self) -> usize {
        self.bodies.len() + self.records.len() * 512
    }

    pub(crate) fn push_entry(&mut self, meta: EntryMeta, body: &[u8]) {
        let offset = self.bodies.len() as u64;
        self.bodies.extend_from_slice(body);
        self.records.push(Record::Entry {
            meta: Box::new(meta),
            offset,
            len: body.len() as u64,
            stored: 0,
        });
    }

    pub(crate) fn push_reject(&mut self, entry_id: String, reason: String) {
        self.records.push(Record::Reject {
            entry_id,
            reason,
            at: Timestamp::now(),
        });
    }

    /// The pending body of an entry, if it is in this block.
    pub(crate) fn body_of(&self, entry_id: &str) -> Option<&[u8]> {
        self.records.iter().find_map(|r| match r {
            Record::Entry {
                meta, offset, len, ..
            } if meta.entry_id == entry_id => {
                Some(&self.bodies[*offset as usize..(*offset + *len) as usize])
            }
            _ => None,
        })
    }

    /// Encodes the block, empties it, and returns the bytes with the records as stored.
    pub(crate) fn take_encoded(&mut self) -> Result<(Vec<u8>, Vec<Record>), std::io::Error> {
        let bodies = std::mem::take(&mut self.bodies);
        let mut records = std::mem::take(&mut self.records);
        let body_section = if bodies.is_empty() {
            Vec::new()
        } else {
            zstd::bulk::compress(&bodies, ZSTD_LEVEL)?
        };
        // Each entry's share of the compressed bodies, in proportion to its size.
        let total = bodies.len().max(1) as u128;
        for r in &mut records {
            if let Record::Entry { len, stored, .. } = r {
                *stored = (body_section.len() as u128 * *len as u128 / total) as u64;
            }
        }
        let mut lines = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut lines, r).map_err(std::io::Error::other)?;
            lines.push(b'\n');
        }
        let meta_section = zstd::bulk::compress(&lines, ZSTD_LEVEL)?;
        let mut out = Vec::with_capacity(HEADER as usize + meta_section.len() + body_section.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(meta_section.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&meta_section).to_le_bytes());
        out.extend_from_slice(&(body_section.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body_section).to_le_bytes());
        let header_crc = crc32fast::hash(&out[..28]);
        out.extend_from_slice(&header_crc.to_le_bytes());
        out.extend_from_slice(&meta_section);
        out.extend_from_slice(&body_section);
        Ok((out, records))
    }
}

/// A block's header, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    meta_len: u64,
    meta_crc: u32,
    body_len: u64,
    body_crc: u32,
}

impl Header {
    fn decode(bytes: &[u8; HEADER as usize]) -> Option<Self> {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        if &bytes[..4] != MAGIC
            || bytes[4] != VERSION
            || crc32fast::hash(&bytes[..28]) != u32_at(28)
        {
            return None;
        }
        Some(Self {
            meta_len: u32_at(8) as u64,
            meta_crc: u32_at(12),
            body_len: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
            body_crc: u32_at(24),
        })
    }

    /// The whole block's size on disk.
    pub(crate) fn total(&self) -> u64 {
        HEADER
            .saturating_add(self.meta_len)
            .saturating_add(self.body_len)
    }
}

/// What a scan of a segment found from some offset on.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The blocks read: their offset and records.
    pub(crate) blocks: Vec<(u64, Vec<Record>)>,
    /// Where the readable part ends.
    pub(crate) end: u64,
    /// Bytes past `end` that are not a complete valid block (a write cut short, or one still
    /// under way in another process).
    pub(crate) tail: u64,
    /// The tail starts with a whole block that fails its checks (not a write cut short): what
    /// follows may be valid, so nothing may remove it.
    pub(crate) corrupt: bool,
}

/// Reads the blocks of a segment from `from` on, stopping at the first incomplete or invalid one.
pub(crate) fn scan(path: &Path, from: u64) -> Result<Scan, LandingError> {
    let mut file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, &mut file);
    reader.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut scan = Scan {
        end: from,
        ..Scan::default()
    };
    let mut pos = from;
    while pos + HEADER <= len {
        let mut bytes = [0u8; HEADER as usize];
        reader.read_exact(&mut bytes).map_err(io(path))?;
        let Some(header) = Header::decode(&bytes) else {
            scan.corrupt = true;
            break;
        };
        if pos.checked_add(header.total()).is_none_or(|end| end > len) {
            break;
        }
        let mut meta = vec![0u8; header.meta_len as usize];
        reader.read_exact(&mut meta).map_err(io(path))?;
        if crc32fast::hash(&meta) != header.meta_crc {
            scan.corrupt = true;
            break;
        }
        let records = decode_records(path, pos, &meta)?;
        reader
            .seek_relative(header.body_len as i64)
            .map_err(io(path))?;
        scan.blocks.push((pos, records));
        pos += header.total();
        scan.end = pos;
    }
    scan.tail = len.saturating_sub(scan.end);
    Ok(scan)
}

/// The records of the block at `offset` (its metadata section, checked and decoded).
pub(crate) fn read_records(path: &Path, offset: u64) -> Result<Vec<Record>, LandingError> {
    let mut file = File::open(path).map_err(io(path))?;
    let header = read_header(&mut file, path, offset)?;
    let mut meta = vec![0u8; header.meta_len as usize];
    file.read_exact(&mut meta).map_err(io(path))?;
    if crc32fast::hash(&meta) != header.meta_crc {
        return Err(LandingError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the metadata of the block at byte {offset} fails its checksum"),
        });
    }
    decode_records(path, offset, &meta)
}

fn read_header(file: &mut File, path: &Path, offset: u64) -> Result<Header, LandingError> {
    let mut bytes = [0u8; HEADER as usize];
    file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    file.read_exact(&mut bytes).map_err(io(path))?;
    Header::decode(&bytes).ok_or_else(|| LandingError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("no valid block at byte {offset}"),
    })
}

fn decode_records(path: &Path, offset: u64, meta: &[u8]) -> Result<Vec<Record>, LandingError> {
    let lines = zstd::stream::decode_all(meta).map_err(io(path))?;
    lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| LandingError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("block at byte {offset}: {e}"),
            })
        })
        .collect()
}

/// The uncompressed body section of the block at `offset`.
pub(crate) fn read_bodies(path: &Path, offset: u64) -> Result<Vec<u8>, LandingError> {
    let mut file = File::open(path).map_err(io(path))?;
    let header = read_header(&mut file, path, offset)?;
    let mut section = vec![0u8; header.body_len as usize];
    file.seek(SeekFrom::Start(offset + HEADER + header.meta_len))
        .map_err(io(path))?;
    file.read_exact(&mut section).map_err(io(path))?;
    if crc32fast::hash(&section) != header.body_crc {
        return Err(LandingError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "the bodies of the block at byte {offset} fail their checksum (the disk lost data written after the last sync)"
            ),
        });
    }
    if section.is_empty() {
        return Ok(Vec::new());
    }
    zstd::stream::decode_all(section.as_slice()).map_err(io(path))
}
