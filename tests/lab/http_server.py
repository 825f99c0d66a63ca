#!/usr/bin/env python3
"""Lab HTTP/1.1 origin on Python's http.server: keep-alive, pipelining (requests are read one after
another from the connection) and 100-continue. `GET /delay/N` answers after N ms, so the tests
know what TTFB to expect; `/chunked` answers with a chunked body. Usage: http_server.py ADDR PORT
"""
import http.server
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "delay" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000.0)
        if parts[0] == "bytes" and len(parts) > 1:
            n = min(int(parts[1]), 50_000_000)
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                while n > 0:
                    piece = min(n, 65536)
                    self.wfile.write(b"v" * piece)
                    n -= piece
            except OSError:
                pass  # the client gave up
            return
        if parts[0] == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"edgeprobe ", b"lab ", b"chunked\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b"edgeprobe lab\n"
        self.send_response(200 if parts[0] != "missing" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "14")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
