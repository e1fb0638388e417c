"""A custom serving container in the Vertex contract, standard library only.

Listens on AIP_HTTP_PORT, answers health on AIP_HEALTH_ROUTE and predictions on
AIP_PREDICT_ROUTE: each instance [a, b, ...] predicts {"sum": a + b + ..., "by": "custom"}; the
instance "slow" answers after 3 seconds (to test timeouts).
`--fail` exits at once with a message (to test failed deploys); `--burn` keeps a core busy
(to test autoscaling on CPU).
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if "--fail" in sys.argv:
    print("custom_server: cannot load the model (on purpose)", flush=True)
    sys.exit(3)

PORT = int(os.environ.get("AIP_HTTP_PORT", "8080"))
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
            self._send(200, {"status": "ok"})
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

print(f"custom_server: listening on {PORT}", flush=True)
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
