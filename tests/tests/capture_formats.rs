//! The same packets give the same events whatever the file format and encapsulation: pcap in
//! either byte order and at either time resolution, pcapng with several interfaces, files named
//! misleadingly, and frames re-wrapped in QinQ (different tags per direction), MPLS, PPPoE,
//! PPPoE inside QinQ, Linux cooked v1 and v2, and raw IP; and TCP segments cut in three (a TLS
//! record or HTTP message then spans segments), in every one of those encapsulations.

use edgeprobe_agent::capture::file::CaptureFile;
use edgeprobe_tests::{fixtures, replay};
use std::path::{Path, PathBuf};

/// A frame as read from a fixture: time in nanoseconds, Ethernet bytes.
struct Packet {
    ts_ns: u64,
    frame: Vec<u8>,
}

fn read_packets(path: &Path) -> Vec<Packet> {
    let mut packets = Vec::new();
    let mut file = CaptureFile::open(path).unwrap();
    file.for_each_frame(|f| packets.push(Packet { ts_ns: f.ts.as_nanos(), frame: f.data.to_vec() })).unwrap();
    packets
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeprobe-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Classic pcap. `nanos` selects the nanosecond magic; `big_endian` the byte order.
fn write_pcap(path: &Path, link: u32, packets: &[(u64, Vec<u8>)], nanos: bool, big_endian: bool) {
    let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&u32b(262_144));
    out.extend_from_slice(&u32b(link));
    for (ts, frame) in packets {
        let frac = if nanos { ts % 1_000_000_000 } else { ts % 1_000_000_000 / 1000 };
        out.extend_from_slice(&u32b((ts / 1_000_000_000) as u32));
        out.extend_from_slice(&u32b(frac as u32));
        out.extend_from_slice(&u32b(frame.len() as u32));
        out.extend_from_slice(&u32b(frame.len() as u32));
        out.extend_from_slice(frame);
    }
    std::fs::write(path, out).unwrap();
}

fn pcapng_block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(std::iter::repeat_n(0, padded - body.len()));
    out.extend_from_slice(&len.to_le_bytes());
}

/// pcapng with two Ethernet interfaces: packets alternate between a microsecond interface and
/// a nanosecond one (`if_tsresol` 9).
fn write_pcapng_two_interfaces(path: &Path, packets: &[Packet]) {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    pcapng_block(&mut out, 0x0a0d_0d0a, &shb);
    for tsresol in [6u8, 9] {
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&262_144u32.to_le_bytes());
        idb.extend_from_slice(&9u16.to_le_bytes()); // if_tsresol
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[tsresol, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        pcapng_block(&mut out, 1, &idb);
    }
    for (i, p) in packets.iter().enumerate() {
        let iface = (i % 2) as u32;
        let units = if iface == 0 { p.ts_ns / 1000 } else { p.ts_ns };
        let mut epb = Vec::new();
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(units as u32).to_le_bytes());
        epb.extend_from_slice(&(p.frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(p.frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&p.frame);
        pcapng_block(&mut out, 6, &epb);
    }
    std::fs::write(path, out).unwrap();
}

/// Events as text, without `device`: a MAC address exists only where the link layer has one.
fn events_of(path: &Path) -> Vec<String> {
    let out = replay(path, &[]);
    assert!(out.success, "{}: {}", path.display(), out.stderr);
    out.events
        .into_iter()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("device");
            e.to_string()
        })
        .collect()
}

/// Events without their packet counts, which cutting segments changes.
/// Events without what counts segments: packets, and the round trips that ACKs of segment ends
/// time (a segment cut in three has two more ends, and an ACK may end a piece instead).
fn without_packet_counts(events: Vec<String>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| {
            let mut v: serde_json::Value = serde_json::from_str(&e).unwrap();
            for field in ["packets_up", "packets_down", "rtt_home", "rtt_network"] {
                v.as_object_mut().unwrap().remove(field);
            }
            v.to_string()
        })
        .collect()
}

fn micro_packets(packets: &[Packet]) -> Vec<(u64, Vec<u8>)> {
    // The microsecond variants must carry the same times as the reference run.
    packets.iter().map(|p| (p.ts_ns / 1000 * 1000, p.frame.clone())).collect()
}

/// Re-wraps an Ethernet frame's payload. `to_server` tells the direction (by the client MAC).
fn rewrap(kind: &str, frame: &[u8], to_server: bool) -> Vec<u8> {
    let (macs, ethertype, payload) = (&frame[..12], [frame[12], frame[13]], &frame[14..]);
    let is_ip = ethertype == [0x08, 0x00] || ethertype == [0x86, 0xdd];
    let mut out = Vec::new();
    match kind {
        "qinq" => {
            out.extend_from_slice(macs);
            let outer: u16 = if to_server { 100 } else { 200 };
            out.extend_from_slice(&[0x88, 0xa8]);
            out.extend_from_slice(&outer.to_be_bytes());
            out.extend_from_slice(&[0x81, 0x00, 0x00, if to_server { 10 } else { 20 }]);
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(payload);
        }
        "mpls" if is_ip => {
            out.extend_from_slice(macs);
            out.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
            out.extend_from_slice(payload);
        }
        "pppoe" if is_ip => {
            out.extend_from_slice(macs);
            out.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x00, 0x2a]);
            out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(if ethertype == [0x08, 0x00] { &[0x00, 0x21] } else { &[0x00, 0x57] });
            out.extend_from_slice(payload);
        }
        "sll" => {
            out.extend_from_slice(&[0, if to_server { 4 } else { 0 }, 0, 1, 0, 6]);
            out.extend_from_slice(&frame[6..12]);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(payload);
        }
        "sll2" => {
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, if to_server { 4 } else { 0 }, 6]);
            out.extend_from_slice(&frame[6..12]);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(payload);
        }
        "raw" if is_ip => out.extend_from_slice(payload),
        _ => out.extend_from_slice(frame),
    }
    out
}

/// The frame's TCP payload cut in three segments, all with the frame's time, as
/// a sender with a smaller segment size would have sent it; other frames as they are.
/// (Checksums are left stale: nothing here reads them.)
fn split_segment(frame: &[u8]) -> Vec<Vec<u8>> {
    let ip = 14;
    let (header_len, total_len, proto) = match [frame[12], frame[13]] {
        [0x08, 0x00] => (
            usize::from(frame[ip] & 0x0f) * 4,
            usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]])),
            frame[ip + 9],
        ),
        [0x86, 0xdd] => (40, 40 + usize::from(u16::from_be_bytes([frame[ip + 4], frame[ip + 5]])), frame[ip + 6]),
        _ => return vec![frame.to_vec()],
    };
    let tcp = ip + header_len;
    if proto != 6 || frame.len() < tcp + 20 {
        return vec![frame.to_vec()];
    }
    let data = tcp + usize::from(frame[tcp + 12] >> 4) * 4;
    let end = (ip + total_len).min(frame.len());
    if end < data + 2 {
        return vec![frame.to_vec()];
    }
    // Three bytes in (inside a TLS record header or an HTTP method), then the middle.
    let cuts = [data, data + 3.min(end - data - 1), data + (end - data) / 2, end];
    let seq = u32::from_be_bytes([frame[tcp + 4], frame[tcp + 5], frame[tcp + 6], frame[tcp + 7]]);
    let piece = |from: usize, to: usize, seq: u32| {
        let mut out = [&frame[..data], &frame[from..to]].concat();
        out[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        let len = out.len() - ip;
        if frame[12] == 0x08 {
            out[ip + 2..ip + 4].copy_from_slice(&(len as u16).to_be_bytes());
        } else {
            out[ip + 4..ip + 6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
        out
    };
    cuts.windows(2).filter(|w| w[0] < w[1]).map(|w| piece(w[0], w[1], seq.wrapping_add((w[0] - data) as u32))).collect()
}

#[test]
fn formats_and_encapsulations_do_not_change_events() {
    let dir = tempdir();
    for fixture in ["lab_tcp.pcap", "lab_dns.pcapng", "lab_tls.pcapng", "lab_http.pcap"] {
        let original = fixtures().join(fixture);
        let packets = read_packets(&original);
        // The reference: the same packets, microsecond times, plain little-endian pcap.
        let reference_path = dir.join(format!("{fixture}-reference.pcap"));
        write_pcap(&reference_path, 1, &micro_packets(&packets), false, false);
        let reference = events_of(&reference_path);
        assert!(reference.len() > 5);
        if fixture.ends_with(".pcap") {
            // The nanosecond original gives the same events as its microsecond copy only where
            // nanoseconds round the same way; the structure must match exactly.
            assert_eq!(events_of(&original).len(), reference.len());
        }

        let be = dir.join(format!("{fixture}-be.pcap"));
        write_pcap(&be, 1, &micro_packets(&packets), false, true);
        assert_eq!(events_of(&be), reference, "big-endian pcap");

        let nano = dir.join(format!("{fixture}-nano-be.pcap"));
        write_pcap(&nano, 1, &micro_packets(&packets), true, true);
        assert_eq!(events_of(&nano), reference, "nanosecond big-endian pcap");

        // A pcapng with two interfaces, saved under a name that says otherwise.
        let micro: Vec<Packet> =
            micro_packets(&packets).into_iter().map(|(ts_ns, frame)| Packet { ts_ns, frame }).collect();
        let ng = dir.join(format!("{fixture}-two-interfaces.pcap"));
        write_pcapng_two_interfaces(&ng, &micro);
        assert_eq!(events_of(&ng), reference, "pcapng with two interfaces");

        let client_mac = packets[0].frame[6..12].to_vec();
        let kinds =
            [("qinq", 1), ("mpls", 1), ("pppoe", 1), ("pppoe-qinq", 1), ("sll", 113), ("sll2", 276), ("raw", 101)];
        for split in [false, true] {
            for (kind, link) in kinds {
                let wrapped: Vec<(u64, Vec<u8>)> = micro_packets(&packets)
                    .into_iter()
                    .filter(|(_, f)| kind != "raw" || [[0x08, 0x00], [0x86, 0xdd]].contains(&[f[12], f[13]]))
                    .flat_map(|(ts, f)| {
                        let to_server = f[6..12] == client_mac[..];
                        let pieces = if split { split_segment(&f) } else { vec![f] };
                        pieces.into_iter().map(move |f| {
                            let mut out = match kind {
                                "pppoe-qinq" => rewrap("qinq", &rewrap("pppoe", &f, to_server), to_server),
                                _ => rewrap(kind, &f, to_server),
                            };
                            // An Ethernet frame is at least 60 bytes: a NIC pads a small segment
                            // with zeros, which only the inner lengths tell from payload.
                            if link == 1 && out.len() < 60 {
                                out.resize(60, 0);
                            }
                            (ts, out)
                        })
                    })
                    .collect();
                let path = dir.join(format!("{fixture}-{kind}-{split}.pcap"));
                write_pcap(&path, link, &wrapped, false, false);
                if split {
                    // More packets, the same measurements.
                    let events = without_packet_counts(events_of(&path));
                    assert_eq!(
                        events,
                        without_packet_counts(reference.clone()),
                        "{fixture} in {kind}, segments cut in three"
                    );
                } else {
                    assert_eq!(events_of(&path), reference, "{fixture} wrapped in {kind}");
                }
            }
        }
    }
}
