//! Live capture from a memory-mapped AF_PACKET ring (TPACKET_V3), the kernel's zero-copy path:
//! the kernel fills blocks of frames with their receive timestamps, the agent reads them in
//! place and hands each block back. This module holds all of the agent's `unsafe`, behind the
//! safe `Ring` type: the mapping lives exactly as long as the `Ring`, and a frame slice is lent
//! only while its block belongs to user space.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};

const SOL_PACKET: libc::c_int = 263;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;

/// `struct tpacket_req3` (linux/if_packet.h).
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInstruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Parses `tcpdump -ddd` output: a count line, then "code jt jf k" per instruction.
pub fn parse_bpf(text: &str) -> Result<Vec<BpfInstruction>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let count: usize = lines.next().ok_or("empty filter")?.parse().map_err(|_| "first line must be the count")?;
    let program: Vec<BpfInstruction> = lines
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bad = || format!("instruction {}: expected \"code jt jf k\", got {l:?}", i + 1);
            if f.len() != 4 {
                return Err(bad());
            }
            Ok(BpfInstruction {
                code: f[0].parse().map_err(|_| bad())?,
                jt: f[1].parse().map_err(|_| bad())?,
                jf: f[2].parse().map_err(|_| bad())?,
                k: f[3].parse().map_err(|_| bad())?,
            })
        })
        .collect::<Result<_, _>>()?;
    if program.len() != count || count == 0 || count > 4096 {
        return Err(format!("count says {count}, {} instructions given", program.len()));
    }
    Ok(program)
}

#[derive(Clone, Debug)]
pub struct RingConfig {
    pub block_size: usize,
    pub block_count: usize,
    /// A block is handed over after this many milliseconds even if not full.
    pub retire_ms: u32,
    pub filter: Option<Vec<BpfInstruction>>,
}

/// One frame as the kernel delivered it.
pub struct RingFrame<'a> {
    pub ts_nanos: u64,
    pub data: &'a [u8],
    pub wire_len: u32,
}

pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    block_count: usize,
    current: usize,
    scratch: Vec<u8>,
}

// SAFETY: the ring's memory is owned by this value alone; moving it to another thread moves
// that ownership with it.
unsafe impl Send for Ring {}

fn last_error<T>() -> io::Result<T> {
    Err(io::Error::last_os_error())
}

impl Ring {
    /// Opens a ring on `interface`. Needs CAP_NET_RAW.
    pub fn open(interface: &str, config: &RingConfig) -> io::Result<Ring> {
        let name = CString::new(interface).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad name"))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {interface}")));
        }
        // SAFETY: a plain socket(2) call; the descriptor is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(ETH_P_ALL.to_be())) };
        if raw < 0 {
            return last_error();
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_option(&fd, PACKET_VERSION, &TPACKET_V3)?;
        if let Some(program) = &config.filter {
            let prog =
                libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
            // SAFETY: the kernel copies the program during the call; `program` outlives it.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    (&prog as *const libc::sock_fprog).cast(),
                    std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return last_error();
            }
        }
        let frame_size = 2048u32;
        let req = TpacketReq3 {
            block_size: config.block_size as u32,
            block_nr: config.block_count as u32,
            frame_size,
            frame_nr: (config.block_size * config.block_count) as u32 / frame_size,
            retire_blk_tov: config.retire_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        set_option(&fd, PACKET_RX_RING, &req)?;
        let map_len = config.block_size * config.block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return last_error();
        }
        // Fault every page in now, so the ring's memory is resident from the start instead of
        // growing with the first traffic bursts: memory is fixed at start-up.
        for page in (0..map_len).step_by(4096) {
            // SAFETY: `page < map_len`, inside the mapping just made.
            unsafe { std::ptr::read_volatile(map.cast::<u8>().add(page)) };
        }
        let ring = Ring {
            fd,
            map: map.cast(),
            map_len,
            block_size: config.block_size,
            block_count: config.block_count,
            current: 0,
            scratch: Vec::with_capacity(65_536),
        };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: binds our socket to a sockaddr_ll we own, with its true size.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return last_error();
        }
        Ok(ring)
    }

    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Hands every frame of every block ready now to `on_frame`; returns the frames read.
    /// Never blocks: the caller polls the descriptor.
    pub fn read(&mut self, mut on_frame: impl FnMut(RingFrame<'_>)) -> usize {
        let mut frames = 0;
        for _ in 0..self.block_count {
            // SAFETY: `current < block_count`, so the block lies inside the mapping.
            let block = unsafe { self.map.add(self.current * self.block_size) };
            // SAFETY: block_status is an aligned u32 at offset 8 of the block descriptor; the
            // kernel writes it concurrently, hence the volatile read.
            let status = unsafe { std::ptr::read_volatile(block.add(8).cast::<u32>()) };
            if status & TP_STATUS_USER == 0 {
                break;
            }
            fence(Ordering::Acquire);
            // SAFETY: the block is ours until we set its status back; its header fields are
            // aligned u32s at fixed offsets.
            let (count, first) =
                unsafe { (std::ptr::read(block.add(12).cast::<u32>()), std::ptr::read(block.add(16).cast::<u32>())) };
            let mut offset = first as usize;
            for _ in 0..count {
                if offset + 48 > self.block_size {
                    break;
                }
                // SAFETY: `offset` stays inside the block (checked above); tpacket3_hdr's
                // fields are aligned u32/u16 at fixed offsets.
                let (next, sec, nsec, snaplen, len, pstatus, mac, tci, tpid) = unsafe {
                    let h = block.add(offset);
                    (
                        std::ptr::read(h.cast::<u32>()),
                        std::ptr::read(h.add(4).cast::<u32>()),
                        std::ptr::read(h.add(8).cast::<u32>()),
                        std::ptr::read(h.add(12).cast::<u32>()),
                        std::ptr::read(h.add(16).cast::<u32>()),
                        std::ptr::read(h.add(20).cast::<u32>()),
                        std::ptr::read(h.add(24).cast::<u16>()),
                        std::ptr::read(h.add(32).cast::<u32>()),
                        std::ptr::read(h.add(36).cast::<u16>()),
                    )
                };
                let start = offset + usize::from(mac);
                if start + snaplen as usize <= self.block_size {
                    // SAFETY: the frame lies inside the block (checked), which is ours.
                    let data = unsafe { std::slice::from_raw_parts(block.add(start), snaplen as usize) };
                    let ts_nanos = u64::from(sec) * 1_000_000_000 + u64::from(nsec);
                    if pstatus & TP_STATUS_VLAN_VALID != 0 && data.len() >= 12 {
                        // The kernel took the 802.1Q tag off; put it back for the dissector.
                        let tpid = if pstatus & TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 { tpid } else { 0x8100 };
                        self.scratch.clear();
                        self.scratch.extend_from_slice(&data[..12]);
                        self.scratch.extend_from_slice(&tpid.to_be_bytes());
                        self.scratch.extend_from_slice(&(tci as u16).to_be_bytes());
                        self.scratch.extend_from_slice(&data[12..]);
                        on_frame(RingFrame { ts_nanos, data: &self.scratch, wire_len: len + 4 });
                    } else {
                        on_frame(RingFrame { ts_nanos, data, wire_len: len });
                    }
                    frames += 1;
                }
                if next == 0 {
                    break;
                }
                offset += next as usize;
            }
            fence(Ordering::Release);
            // SAFETY: hands the block back to the kernel; we hold no slice into it any more.
            unsafe { std::ptr::write_volatile(block.add(8).cast::<u32>(), TP_STATUS_KERNEL) };
            self.current = (self.current + 1) % self.block_count;
        }
        frames
    }

    /// Packets received and dropped by the kernel since the last call.
    pub fn statistics(&self) -> io::Result<(u64, u64)> {
        let mut stats = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `stats`, which we own.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut stats as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return last_error();
        }
        Ok((u64::from(stats.packets), u64::from(stats.drops)))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no slice into it outlives `read`.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

fn set_option<T>(fd: &OwnedFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: passes a reference to a value we own with its true size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 { last_error() } else { Ok(()) }
}

/// Waits until one of `fds` is readable or has an error, or `timeout_ms` passes. Returns the
/// descriptors with an error condition (a vanished interface).
pub fn wait(fds: &[i32], timeout_ms: i32) -> Vec<i32> {
    let mut polls: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN | libc::POLLERR, revents: 0 }).collect();
    // SAFETY: `polls` is a live array of `polls.len()` pollfd structs.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return Vec::new();
    }
    polls.iter().filter(|p| p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0).map(|p| p.fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_ddd_output() {
        let p = parse_bpf("4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n").unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[1], BpfInstruction { code: 21, jt: 0, jf: 1, k: 2048 });
        assert!(parse_bpf("3\n40 0 0 12\n").is_err());
        assert!(parse_bpf("1\n40 0 x 12\n").is_err());
    }
}
