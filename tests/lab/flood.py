#!/usr/bin/env python3
"""Floods for the hostile-conditions test. Usage: flood.py syn|dns DST COUNT
syn: TCP SYNs from 192.0.2.10 with a new source port and sequence number each (raw socket),
     so every packet opens a new flow;
dns: DNS queries with a new id and name each, so every packet opens a new transaction."""
import random
import socket
import struct
import sys


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(src, dst, sport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randrange(65536), 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def main():
    mode, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "syn":
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for i in range(count):
            s.sendto(syn("192.0.2.10", dst, 1024 + i % 64000, random.getrandbits(32)), (dst, 0))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(count):
            name = b"".join(bytes([len(p)]) + p for p in [b"q%d" % i, b"flood", b"example"]) + b"\0"
            query = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1"
            try:
                s.sendto(query, (dst, 53))
            except OSError:
                pass


if __name__ == "__main__":
    main()
