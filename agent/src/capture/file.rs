//! Capture files: pcap (microsecond or nanosecond, either byte order) and pcapng (any number of
//! sections and interfaces, each with its own link type, time resolution and offset). The format
//! is told from the magic number by `pcap-parser`, never from the file name.
//!
//! A truncated or corrupt file is reported with the byte offset of the record that failed; the
//! frames before it have already been handed on.

use edgeprobe_core::{LinkType, Timestamp};
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use std::fs::File;
use std::path::Path;

const BUFFER: usize = 1 << 20;
/// No real record is larger; a bigger length field means the file is corrupt.
const MAX_RECORD: usize = 16 << 20;

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire; more than `data.len()` when the capture had a snap length.
    pub wire_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    // The reason is in the message, not a source: `{:#}` would print it twice.
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("not a pcap or pcapng file (unrecognized magic number)")]
    NotACapture,
    #[error("empty file")]
    Empty,
    #[error("truncated in the file header")]
    TruncatedHeader,
    #[error("truncated at byte offset {offset}: the last record is incomplete")]
    Truncated { offset: u64 },
    #[error("corrupt record at byte offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("read error at byte offset {offset}")]
    Read { offset: u64 },
}

struct Interface {
    link: LinkType,
    /// Units per second of the interface's timestamps.
    resolution: u64,
    offset_secs: i64,
}

pub struct CaptureFile {
    reader: Box<dyn PcapReaderIterator + Send>,
    interfaces: Vec<Interface>,
    /// The reader's buffer size; it doubles, up to `MAX_RECORD`, for a record that does not fit.
    capacity: usize,
    /// (pcapng, big-endian) once the file or section header is read: where a record header
    /// keeps its length, to tell a corrupt length from a file cut short.
    layout: Option<(bool, bool)>,
}

impl CaptureFile {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(CaptureError::Open)?;
        // A directory opens, then fails its first read with no reason given.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(CaptureError::Open(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory")));
        }
        let reader = create_reader(BUFFER, file).map_err(|e| match e {
            PcapError::Eof => CaptureError::Empty,
            PcapError::Incomplete(_) | PcapError::UnexpectedEof => CaptureError::TruncatedHeader,
            PcapError::ReadError => CaptureError::Read { offset: 0 },
            _ => CaptureError::NotACapture,
        })?;
        Ok(CaptureFile { reader, interfaces: Vec::new(), capacity: BUFFER, layout: None })
    }

    /// Hands every frame to `on_frame`, in file order. Stops at the end of the file, or at the
    /// first damaged record with an error naming its offset.
    pub fn for_each_frame(&mut self, mut on_frame: impl FnMut(Frame<'_>)) -> Result<(), CaptureError> {
        loop {
            let offset = self.reader.consumed() as u64;
            match self.reader.next() {
                Ok((len, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            let resolution = if h.is_nanosecond_precision() { 1_000_000_000 } else { 1_000_000 };
                            self.layout = Some((false, h.is_bigendian()));
                            self.interfaces.clear();
                            self.interfaces.push(Interface {
                                link: LinkType::from_linktype(h.network.0 as u32),
                                resolution,
                                offset_secs: 0,
                            });
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let Some(iface) = self.interfaces.first() else {
                                return Err(CaptureError::Corrupt {
                                    offset,
                                    reason: "record before file header".into(),
                                });
                            };
                            let frac = u64::from(b.ts_usec);
                            let ts = timestamp(u64::from(b.ts_sec), frac, iface.resolution, 0);
                            let data = &b.data[..(b.caplen as usize).min(b.data.len())];
                            check_wire_len(offset, b.origlen)?;
                            on_frame(Frame { ts, link: iface.link, data, wire_len: b.origlen });
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            self.layout = Some((true, shb.big_endian()));
                            self.interfaces.clear();
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let resolution = idb.ts_resolution().ok_or_else(|| CaptureError::Corrupt {
                                offset,
                                reason: format!("interface time resolution {:#x} out of range", idb.if_tsresol),
                            })?;
                            self.interfaces.push(Interface {
                                link: LinkType::from_linktype(idb.linktype.0 as u32),
                                resolution,
                                offset_secs: idb.ts_offset(),
                            });
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let Some(iface) = self.interfaces.get(epb.if_id as usize) else {
                                return Err(CaptureError::Corrupt {
                                    offset,
                                    reason: format!("packet for undeclared interface {}", epb.if_id),
                                });
                            };
                            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ts = timestamp(
                                raw / iface.resolution,
                                raw % iface.resolution,
                                iface.resolution,
                                iface.offset_secs,
                            );
                            let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                            check_wire_len(offset, epb.origlen)?;
                            on_frame(Frame { ts, link: iface.link, data, wire_len: epb.origlen });
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // Simple packets have no timestamp; they cannot be measured, but count.
                            if let Some(iface) = self.interfaces.first() {
                                on_frame(Frame {
                                    ts: Timestamp::ZERO,
                                    link: iface.link,
                                    data: spb.data,
                                    wire_len: spb.origlen,
                                });
                            }
                        }
                        PcapBlockOwned::NG(_) => {}
                    }
                    self.reader.consume(len);
                }
                Err(PcapError::Eof) => return Ok(()),
                Err(PcapError::Incomplete(_)) => {
                    self.reader.refill().map_err(|_| CaptureError::Read { offset })?;
                }
                Err(PcapError::BufferTooSmall) => {
                    let size = self.capacity * 2;
                    if size > MAX_RECORD || !self.reader.grow(size) {
                        return Err(CaptureError::Corrupt {
                            offset,
                            reason: format!("record longer than {MAX_RECORD} bytes"),
                        });
                    }
                    self.capacity = size;
                    self.reader.refill().map_err(|_| CaptureError::Read { offset })?;
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(match self.claimed_length() {
                        Some(len) if len > MAX_RECORD as u64 => CaptureError::Corrupt {
                            offset,
                            reason: format!("record claims {len} bytes, more than {MAX_RECORD}"),
                        },
                        _ => CaptureError::Truncated { offset },
                    });
                }
                Err(PcapError::ReadError) => return Err(CaptureError::Read { offset }),
                Err(e) => {
                    let reason = match e {
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("unparsable record ({kind:?})")
                        }
                        PcapError::HeaderNotRecognized => "unrecognized block".into(),
                        other => format!("{other:?}"),
                    };
                    return Err(CaptureError::Corrupt { offset, reason });
                }
            }
        }
    }
}

impl CaptureFile {
    /// The length the record at the reader's position says it has, where its header is whole.
    fn claimed_length(&self) -> Option<u64> {
        let (ng, big) = self.layout?;
        // pcap: captured length at bytes 8..12 of 16; pcapng: block length at 4..8.
        let at = if ng { 4 } else { 8 };
        let raw: [u8; 4] = self.reader.data().get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if big { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) }))
    }
}

/// A frame longer on the wire than any record could be means a corrupt record header.
fn check_wire_len(offset: u64, wire_len: u32) -> Result<(), CaptureError> {
    if wire_len as usize > MAX_RECORD {
        return Err(CaptureError::Corrupt {
            offset,
            reason: format!("original length {wire_len} exceeds {MAX_RECORD} bytes"),
        });
    }
    Ok(())
}

/// Nanoseconds since the epoch from whole seconds and a fraction in `resolution` units.
fn timestamp(secs: u64, frac: u64, resolution: u64, offset_secs: i64) -> Timestamp {
    let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(resolution.max(1))) as u64;
    let secs = secs.saturating_add_signed(offset_secs);
    Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_convert_at_any_resolution() {
        assert_eq!(timestamp(1, 5, 1_000_000, 0), Timestamp(1_000_005_000));
        assert_eq!(timestamp(1, 5, 1_000_000_000, 0), Timestamp(1_000_000_005));
        assert_eq!(timestamp(1, 1, 1 << 10, 2), Timestamp(3_000_976_562));
    }

    /// What reading `bytes` as a capture ends with.
    fn outcome(name: &str, bytes: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("edgeprobe-file-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let result = CaptureFile::open(&path).and_then(|mut f| f.for_each_frame(|_| {}));
        let _ = std::fs::remove_file(&path);
        result.map_or_else(|e| e.to_string(), |()| "ok".into())
    }

    /// A little-endian microsecond pcap header for Ethernet.
    fn header() -> Vec<u8> {
        [&0xa1b2_c3d4u32.to_le_bytes()[..], &[2, 0, 4, 0], &[0; 8], &65_535u32.to_le_bytes(), &1u32.to_le_bytes()]
            .concat()
    }

    fn record(caplen: u32, data: &[u8]) -> Vec<u8> {
        [&[0u8; 8][..], &caplen.to_le_bytes(), &caplen.to_le_bytes(), data].concat()
    }

    #[test]
    fn damage_is_named_for_what_it_is() {
        let whole = [header(), record(60, &[0; 60])].concat();
        assert_eq!(outcome("whole", &whole), "ok");
        assert_eq!(outcome("header", &header()[..10]), "truncated in the file header");
        assert_eq!(
            outcome("cut", &whole[..whole.len() - 8]),
            "truncated at byte offset 24: the last record is incomplete"
        );
        let huge = [whole.clone(), record(0xFFFF_FF00, &[0; 100])].concat();
        assert_eq!(
            outcome("huge", &huge),
            "corrupt record at byte offset 100: record claims 4294967040 bytes, more than 16777216"
        );
        let dir = CaptureFile::open(&std::env::temp_dir()).err().map(|e| e.to_string());
        assert_eq!(dir.as_deref(), Some("cannot open: is a directory"));
        let missing = CaptureFile::open(Path::new("/nonexistent/x.pcap")).err().unwrap();
        assert_eq!(format!("{:#}", anyhow::Error::new(missing)), "cannot open: No such file or directory (os error 2)");
    }
}
