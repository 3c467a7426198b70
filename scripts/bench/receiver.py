"""A webhook receiver for `make bench`: answers every POST with 204 and, when stopped, says how
many it took. Loopback only."""
import http.server
import signal
import sys

received = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global received
        self.rfile.read(int(self.headers.get("content-length", 0)))
        received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"receiver: {received} deliveries", file=sys.stderr)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
