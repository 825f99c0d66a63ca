#!/usr/bin/env python3
"""Seeds the fuzz corpora from the project's own lab captures: every frame for `dissect` (in the
target's framing: link byte, time step, length), every DNS payload for `dns`, TLS and HTTP
payloads for `tls` and `http`; and for `quic`, handshakes written here in the target's framing
(no lab capture has QUIC yet)."""
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "tests", "fixtures")


def frames(path):
    """(linktype, frame) for each packet of a pcap or pcapng file."""
    data = open(path, "rb").read()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        at, links = 0, []
        while at + 12 <= len(data):
            btype, blen = struct.unpack_from("<II", data, at)
            body = data[at + 8:at + blen - 4]
            if btype == 1:
                links.append(struct.unpack_from("<H", body)[0])
            elif btype == 6:
                iface, _, _, caplen = struct.unpack_from("<IIII", body)
                yield links[iface], body[20:20 + caplen]
            at += blen
    else:
        endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        link = struct.unpack_from(endian + "I", data, 20)[0]
        at = 24
        while at + 16 <= len(data):
            caplen = struct.unpack_from(endian + "I", data, at + 8)[0]
            yield link, data[at + 16:at + 16 + caplen]
            at += 16 + caplen


def transport(link, frame):
    """(protocol, ports, payload) of an Ethernet IPv4/IPv6 TCP or UDP frame."""
    if link != 1 or len(frame) < 14:
        return None
    ethertype, ip = struct.unpack_from(">H", frame, 12)[0], frame[14:]
    if ethertype == 0x0800 and len(ip) >= 28:
        proto, l4 = ip[9], ip[(ip[0] & 15) * 4:]
    elif ethertype == 0x86DD and len(ip) >= 48:
        proto, l4 = ip[6], ip[40:]
    else:
        return None
    if proto == 17 and len(l4) >= 8:
        return 17, struct.unpack_from(">HH", l4), l4[8:]
    if proto == 6 and len(l4) >= 20:
        return 6, struct.unpack_from(">HH", l4), l4[(l4[12] >> 4) * 4:]
    return None


def client_hello():
    """A ClientHello handshake message: SNI portal.example, ALPN h3."""
    name = b"portal.example"
    sni = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    alpn = struct.pack(">HHHB", 16, 5, 3, 2) + b"h3"
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack(">H", len(sni + alpn)) + sni + alpn
    return bytes([1, 0, len(body) >> 8, len(body) & 0xFF]) + body


def crypto(offset, data):
    """A CRYPTO frame with two-byte varints."""
    return bytes([6]) + struct.pack(">HH", 0x4000 | offset, 0x4000 | len(data)) + data


def quic_seeds():
    """Datagrams for `targets::quic`: a first byte saying who sends and how, 0xfe between."""
    hello = client_hello()
    half = len(hello) // 2
    sealed = lambda frames, v2=False: bytes([0xC0 if v2 else 0x80]) + frames + bytes(1160 - len(frames))
    server = lambda kind: bytes([1, 0xC3 | kind << 4, 0, 0, 0, 1, 3, 1, 2, 3, 3, 4, 5, 6]) + \
        (b"\x00" if kind == 0 else b"") + b"\x40\x28" + bytes(40)
    short = bytes([0, 0x43, 4, 5, 6]) + bytes(30)
    handshake = bytes([0, 0xE3, 0, 0, 0, 1, 3, 4, 5, 6, 3, 1, 2, 3, 0x40, 0x28]) + bytes(40)
    retry = bytes([1, 0xF3, 0, 0, 0, 1, 3, 1, 2, 3, 3, 4, 5, 6]) + bytes(24)
    return {
        "seed-quic-handshake": [sealed(crypto(0, hello)), server(0) + server(2)[1:], handshake, short],
        "seed-quic-out-of-order": [sealed(crypto(half, hello[half:])), sealed(crypto(0, hello[:half])), server(0)],
        "seed-quic-v2": [sealed(crypto(0, hello), True), server(0), short],
        "seed-quic-retry": [sealed(crypto(0, hello[:20])), retry, sealed(crypto(0, hello)), server(0), short],
    }


def main():
    os.makedirs(os.path.join(here, "corpus", "quic"), exist_ok=True)
    for name, datagrams in quic_seeds().items():
        assert all(b"\xfe" not in d for d in datagrams)
        open(os.path.join(here, "corpus", "quic", name), "wb").write(b"\xfe".join(datagrams))
    link_index = {1: 0, 101: 1, 113: 2, 276: 3}
    for target in ("dissect", "dns", "tls", "http"):
        os.makedirs(os.path.join(here, "corpus", target), exist_ok=True)
    for name in sorted(os.listdir(fixtures)):
        if not name.startswith("lab_"):
            continue
        for i, (link, frame) in enumerate(frames(os.path.join(fixtures, name))):
            framed = bytes([link_index.get(link, 0), 1, len(frame) // 8, len(frame) % 8]) + frame
            open(os.path.join(here, "corpus", "dissect", "seed-%s-%03d" % (name, i)), "wb").write(framed)
            parsed = transport(link, frame)
            if not parsed or not parsed[2]:
                continue
            proto, ports, payload = parsed
            target = "dns" if proto == 17 and 53 in ports else \
                "tls" if proto == 6 and {443, 8443, 9443} & set(ports) else \
                "http" if proto == 6 and {80, 8080} & set(ports) else None
            if target:
                open(os.path.join(here, "corpus", target, "seed-%s-%03d" % (name, i)), "wb").write(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
