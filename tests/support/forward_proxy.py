"""A forward HTTP proxy for the tests, on 127.0.0.1 on a free port: it prints "PORT <n>" and
runs until its standard input closes.

It forwards absolute-form requests (`POST http://host:port/ HTTP/1.1`, how a client sends plain
HTTP through a proxy) and tunnels CONNECT (how a client sends HTTPS), and records each one: the
method, the target, the `X-Amz-Target` operation and the `Proxy-Authorization` header. A test
reads the records with `GET /__seen` (origin form, so not itself proxied)."""
import http.client
import http.server
import json
import select
import socket
import sys
import threading
from urllib.parse import urlsplit

SEEN = []
LOCK = threading.Lock()
HOP_BY_HOP = {"connection", "proxy-connection", "proxy-authorization", "keep-alive",
              "transfer-encoding", "te", "trailer", "upgrade"}


def record(handler, target):
    with LOCK:
        SEEN.append({
            "method": handler.command,
            "target": target,
            "operation": (handler.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1],
            "proxy_authorization": handler.headers.get("Proxy-Authorization"),
        })


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        if self.path == "/__seen":
            with LOCK:
                body = json.dumps(SEEN).encode()
            return self.reply(200, body)
        url = urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            return self.reply(400, b"a proxy request needs an absolute http:// target", "text/plain")
        record(self, self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        upstream.request(self.command, path, body=body, headers=headers)
        resp = upstream.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = forward

    def do_CONNECT(self):
        record(self, self.path)
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except OSError:
            return self.reply(502, b"cannot reach the target", "text/plain")
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], 30)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"PORT {server.server_address[1]}", flush=True)
sys.stdin.read()
server.shutdown()
