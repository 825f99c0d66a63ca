#!/usr/bin/env python3
"""An upstream DNS server that is broken on purpose: it answers every query with SERVFAIL, as a
recursive resolver does when it cannot reach a zone's servers. dnsmasq forwards a lab zone here so
that the client sees a real SERVFAIL from dnsmasq. Usage: failing_upstream.py ADDRESS PORT
"""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
while True:
    query, peer = sock.recvfrom(4096)
    if len(query) < 12:
        continue
    # Same id and question; QR and RA set, RD copied, rcode 2; no answers.
    flags = bytes([0x80 | (query[2] & 0x01), 0x80 | 0x02])
    sock.sendto(query[:2] + flags + query[4:6] + b"\0\0\0\0\0\0" + query[12:], peer)
