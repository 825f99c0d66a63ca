#!/usr/bin/env python3
"""A DNS server that answers late on purpose: every A query gets 198.51.100.10 after DELAY
seconds, as an overloaded resolver or a tunnel does, so the client's resolver library has
given up (or not) before the answer comes. Usage: slow_dns.py ADDRESS PORT DELAY
"""
import socket
import sys
import threading

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
delay = float(sys.argv[3])


def answer(query, peer):
    # Same id and question; QR, RA and RD set; one A record pointing at the question's name.
    flags = bytes([0x80 | (query[2] & 0x01), 0x80])
    record = b"\xc0\x0c" + b"\x00\x01\x00\x01" + b"\x00\x00\x00\x3c" + b"\x00\x04" + bytes([198, 51, 100, 10])
    sock.sendto(query[:2] + flags + query[4:6] + b"\x00\x01\x00\x00\x00\x00" + query[12:] + record, peer)


while True:
    query, peer = sock.recvfrom(4096)
    if len(query) >= 12:
        threading.Timer(delay, answer, (query, peer)).start()
