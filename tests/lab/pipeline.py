#!/usr/bin/env python3
"""Sends several HTTP/1.1 requests in one write, without waiting for responses (pipelining, which
curl no longer does), then reads until every response has arrived. Usage: pipeline.py HOST PORT"""
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
requests = b"".join(
    b"%s %s HTTP/1.1\r\nHost: pipeline.lab.example\r\n\r\n" % (method, path)
    for method, path in [(b"GET", b"/delay/30"), (b"HEAD", b"/"), (b"GET", b"/chunked"), (b"GET", b"/missing")]
)
with socket.create_connection((host, port)) as s:
    s.sendall(requests)
    s.settimeout(3)
    seen = b""
    while seen.count(b"HTTP/1.1 ") < 4:
        data = s.recv(65536)
        if not data:
            break
        seen += data
