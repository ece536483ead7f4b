#!/usr/bin/env python3
"""Git's smart HTTP protocol on loopback for the benchmarks: `git http-backend` behind a small
threaded HTTP server (standard library only). Flux's source-controller accepts only http(s) and
ssh URLs, so both tools read the same repositories through this server.

Usage: git_http.py ROOT PORT_FILE [REQUEST_LOG]
Serves every bare repository under ROOT at http://127.0.0.1:<port>/<name>.git and writes the
port to PORT_FILE once listening. Runs until killed. With REQUEST_LOG, appends one line per Git
request, "<unix time> <refs|fetch> <path>": `refs` is a ref advertisement (GET info/refs, what
an ls-remote or the start of every fetch costs), `fetch` a pack negotiation (POST
git-upload-pack, a fetch that transfers or at least negotiates objects). The benchmarks count
them to compare how often each tool goes to Git.
"""

import http.server
import os
import subprocess
import sys
import threading
import time


def main() -> None:
    root, port_file = sys.argv[1], sys.argv[2]
    request_log = open(sys.argv[3], "a", buffering=1) if len(sys.argv) > 3 else None
    log_lock = threading.Lock()

    def record(kind: str, path: str) -> None:
        if request_log is None:
            return
        with log_lock:
            request_log.write(f"{time.time():.3f} {kind} {path}\n")
    exec_path = subprocess.check_output(["git", "--exec-path"], text=True).strip()
    backend = os.path.join(exec_path, "git-http-backend")

    class Handler(http.server.BaseHTTPRequestHandler):
        # Quiet: a benchmark makes thousands of requests.
        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass

        def do_GET(self):
            self.cgi()

        def do_POST(self):
            self.cgi()

        def read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def cgi(self):
            path, _, query = self.path.partition("?")
            body = self.read_body()
            if path.endswith("/info/refs"):
                record("refs", path)
            elif path.endswith("/git-upload-pack"):
                record("fetch", path)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
            }
            for header, var in (("Git-Protocol", "GIT_PROTOCOL"), ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
                if self.headers.get(header):
                    env[var] = self.headers[header]
            out = subprocess.run([backend], input=body, env=env, capture_output=True).stdout
            sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
            head, _, payload = out.partition(sep)
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
