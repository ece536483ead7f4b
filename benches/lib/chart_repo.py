#!/usr/bin/env python3
"""A Helm chart repository for the benchmarks: a static file server on a free loopback port that
counts requests by path and answer, and revalidates like a CDN would: every file has an ETag (the
SHA-256 of its bytes) and a Last-Modified (its mtime); If-None-Match, else If-Modified-Since,
gets a 304 when the file did not change.

Counts, per path: "200", "304", "404" (answers), and "cond-200" (a conditional request that got
the whole file, i.e. a failed revalidation), "inm" and "ims" (requests that carried
If-None-Match / If-Modified-Since). Every counted request is also a line "UNIX-TIME PATH STATUS" in
PORTFILE.log. GET /__counts returns them as JSON, e.g.
{"/index.yaml": {"200": 1, "304": 4, "inm": 4}}; SIGUSR1 writes the same JSON to PORTFILE.counts.
/__counts itself is not counted.

Usage: chart_repo.py DIR PORTFILE [PARENT_PID]
  writes the port to PORTFILE once listening; exits when PARENT_PID (if given) is gone, so a
  killed benchmark leaves no server behind.
"""
import email.utils
import hashlib
import http.server
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict

root = os.path.abspath(sys.argv[1])
port_file = sys.argv[2]
parent = int(sys.argv[3]) if len(sys.argv) > 3 else 0
counts = defaultdict(lambda: defaultdict(int))
lock = threading.Lock()
request_log = open(port_file + ".log", "a")


def snapshot():
    with lock:
        return json.dumps(counts, sort_keys=True).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def count(self, path, *keys):
        with lock:
            for key in keys:
                counts[path][key] += 1
            request_log.write("%.3f %s %s\n" % (time.time(), path, keys[0]))
            request_log.flush()

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/__counts":
            return self.send(200, snapshot(), [("Content-Type", "application/json")])
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        sent = [k for k, v in (("inm", inm), ("ims", ims)) if v is not None]
        file = os.path.abspath(os.path.join(root, path.lstrip("/")))
        if not file.startswith(root + os.sep) or not os.path.isfile(file):
            self.count(path, "404", *sent)
            return self.send(404)
        with open(file, "rb") as f:
            data = f.read()
        mtime = int(os.stat(file).st_mtime)
        etag = '"%s"' % hashlib.sha256(data).hexdigest()
        validators = [("ETag", etag), ("Last-Modified", email.utils.formatdate(mtime, usegmt=True))]
        if inm is not None:
            fresh = etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
        elif ims is not None:
            try:
                fresh = mtime <= email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                fresh = False
        else:
            fresh = False
        if fresh:
            self.count(path, "304", *sent)
            return self.send(304, b"", validators)
        self.count(path, "200", *sent, *(["cond-200"] if sent else []))
        kind = "text/yaml" if file.endswith(".yaml") else "application/gzip"
        self.send(200, data, validators + [("Content-Type", kind)])

    do_HEAD = do_GET


def dump(*_):
    with open(port_file + ".counts.tmp", "wb") as f:
        f.write(snapshot())
    os.replace(port_file + ".counts.tmp", port_file + ".counts")


def watch_parent():
    while True:
        time.sleep(1)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
if parent:
    threading.Thread(target=watch_parent, daemon=True).start()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(port_file + ".tmp", port_file)
server.serve_forever()
