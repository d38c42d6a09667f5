"""A webhook endpoint on loopback that checks every request with the Standard Webhooks
reference library (PyPI `standardwebhooks`), independently of the code that signs them.

POST /_config {"secret": "whsec_...", "fail_first": N} sets the secret to verify with and how
many deliveries to answer 503 first (a failing endpoint). Each POST /hook is appended to --out
as one JSON line: {"verified": bool, "error", "webhook_id", "status", "payload"}; a request
that does not verify gets 400, one failed on purpose 503, the others 204.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

state = {"secret": None, "fail_first": 0}
lock = threading.Lock()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = open(args.out, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/_config":
                with lock:
                    state.update(json.loads(body))
                return self.answer(204)
            headers = {k.lower(): v for k, v in self.headers.items()}
            record = {"webhook_id": headers.get("webhook-id")}
            try:
                payload = Webhook(state["secret"]).verify(body, headers)
                record.update(verified=True, payload=payload)
            except (WebhookVerificationError, Exception) as e:  # any failure is a finding
                record.update(verified=False, error=repr(e))
            with lock:
                if not record["verified"]:
                    status = 400
                elif state["fail_first"] > 0:
                    state["fail_first"] -= 1
                    status = 503
                else:
                    status = 204
                record["status"] = status
                out.write(json.dumps(record) + "\n")
            self.answer(status)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
