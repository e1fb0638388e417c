"""A custom serving container in the Vertex contract, standard library only.

Listens on AIP_HTTP_PORT, answers health on AIP_HEALTH_ROUTE and predictions on
AIP_PREDICT_ROUTE: each instance [a, b, ...] predicts {"sum": a + b + ..., "by": "custom"}; the
instance "slow" answers after 3 seconds (to test timeouts).
`--fail` exits at once with a message (to test failed deploys); `--burn` keeps a core busy
(to test autoscaling on CPU); `--sick` fails its health checks; `--port N` listens on N whatever
AIP_HTTP_PORT says; `--host H` listens on H (default 127.0.0.1; 0.0.0.0 in a container). GET
/env answers the variables whose names start with AIP_, CUDA_ or AWS_ (their presence only for
AWS_), and GET /artifact the first bytes of the file AIP_STORAGE_URI names.
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if "--fail" in sys.argv:
    print("custom_server: cannot load the model (on purpose)", flush=True)
    sys.exit(3)

def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


PORT = int(option("--port", os.environ.get("AIP_HTTP_PORT", "8080")))
HOST = option("--host", "127.0.0.1")
SICK = "--sick" in sys.argv
PREDICT = os.environ.get("AIP_PREDICT_ROUTE", "/predict")
HEALTH = os.environ.get("AIP_HEALTH_ROUTE", "/health")


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == HEALTH:
            self._send(500 if SICK else 200, {"status": "sick" if SICK else "ok"})
        elif self.path == "/env":
            env = {k: ("set" if k.startswith("AWS_") else v) for k, v in os.environ.items()
                   if k.startswith(("AIP_", "CUDA_", "AWS_"))}
            self._send(200, env)
        elif self.path == "/artifact":
            uri = os.environ.get("AIP_STORAGE_URI", "")
            try:
                with open(uri.removeprefix("file://"), "rb") as f:
                    self._send(200, {"uri": uri, "head": f.read(8).hex()})
            except OSError as e:
                self._send(404, {"uri": uri, "error": str(e)})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path != PREDICT:
            self._send(404, {"error": "not found"})
            return
        try:
            instances = json.loads(raw)["instances"]
            if instances == ["slow"]:
                time.sleep(3)
            predictions = [{"sum": sum(i), "by": "custom"} for i in instances]
            print(f"custom_server: predicted {len(instances)} instances", flush=True)
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {"error": str(e)})
            return
        self._send(200, {"predictions": predictions})

    def log_message(self, *args):
        pass


def burn():
    while True:
        pass


if "--burn" in sys.argv:
    threading.Thread(target=burn, daemon=True).start()

STORAGE = os.environ.get("AIP_STORAGE_URI", "")
if STORAGE:
    readable = os.access(STORAGE.removeprefix("file://"), os.R_OK)
    print(f"custom_server: artifact {STORAGE} {'readable' if readable else 'not readable'}", flush=True)

# As PID 1 in a container nothing stops the server on SIGTERM unless it says so.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"custom_server: listening on {HOST}:{PORT}", flush=True)
ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
