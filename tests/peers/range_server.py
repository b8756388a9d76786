#!/usr/bin/env python3
"""A slow HTTP server of one file with Range support, for the fleet's resumed-download test.

Usage: range_server.py FILE RATE LOG PORT_FILE

Serves FILE at any path at about RATE bytes per second, answers `Range: bytes=N-` with 206 and
the rest of the file, appends each request's Range header (or "-") to LOG, one per line, and
writes the port it listens on (127.0.0.1, chosen by the system) to PORT_FILE.
"""
import http.server
import re
import sys
import time

FILE, RATE, LOG, PORT_FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(FILE, "rb") as f:
            data = f.read()
        asked = self.headers.get("Range")
        with open(LOG, "a") as log:
            log.write((asked or "-") + "\n")
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", asked or "")
        if m and int(m.group(1)) < len(data):
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        chunk = max(1, RATE // 20)
        pos = start
        try:
            while pos < len(data):
                self.wfile.write(data[pos:pos + chunk])
                self.wfile.flush()
                pos += chunk
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
