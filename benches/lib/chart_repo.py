#!/usr/bin/env python3
"""A Helm chart repository for the benchmarks: a static file server on a free loopback port that
answers If-None-Match with 304 (the ETag is the SHA-256 of the file) and counts requests by path
and status. GET /__counts returns the counts as JSON: {"/index.yaml": {"200": 1, "304": 4}, ...}.

Usage: chart_repo.py DIR PORTFILE   (writes the port to PORTFILE once listening)
"""
import hashlib
import http.server
import json
import os
import sys
import threading
from collections import defaultdict

root = os.path.abspath(sys.argv[1])
counts = defaultdict(lambda: defaultdict(int))
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def count(self, status):
        with lock:
            counts[self.path.split("?")[0]][str(status)] += 1

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/__counts":
            with lock:
                body = json.dumps(counts).encode()
            return self.send(200, body, [("Content-Type", "application/json")])
        file = os.path.abspath(os.path.join(root, path.lstrip("/")))
        if not file.startswith(root + os.sep) or not os.path.isfile(file):
            self.count(404)
            return self.send(404)
        with open(file, "rb") as f:
            data = f.read()
        etag = '"%s"' % hashlib.sha256(data).hexdigest()
        if self.headers.get("If-None-Match") == etag:
            self.count(304)
            return self.send(304, b"", [("ETag", etag)])
        self.count(200)
        self.send(200, data, [("ETag", etag), ("Content-Type", "application/octet-stream")])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
server.serve_forever()
