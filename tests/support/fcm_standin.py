"""A stand-in for Google's OAuth 2.0 token endpoint and the FCM HTTP v1 send endpoint, on
loopback, checking what we send with `cryptography` (independently of the code that signs it).

GET  /service-account               a new service account (an RSA key made here), as Google's
                                    JSON key file holds it, its token_uri this server's.
POST /_config {"unregistered": [tokens]}   app tokens answered 404 UNREGISTERED.
POST /token                         checks the JWT bearer grant (RS256 signature with the
                                    account's key; iss, scope, aud, iat, exp) and answers an
                                    access token.
POST /v1/projects/<p>/messages:send checks the access token and the message's shape.
Each request is appended to --out as one JSON line {"path", "ok", "error", "status", "body"}.
"""

import argparse
import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
state = {"key": None, "email": "notify@test-project.iam.gserviceaccount.com", "unregistered": [], "tokens": set()}
lock = threading.Lock()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = open(args.out, "a", buffering=1)
    base = f"http://127.0.0.1:{args.port}"

    def check_grant(form):
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            raise ValueError("grant_type")
        head, claims, signature = form["assertion"][0].split(".")
        if json.loads(unb64(head)).get("alg") != "RS256":
            raise ValueError("alg is not RS256")
        state["key"].public_key().verify(
            unb64(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        claims = json.loads(unb64(claims))
        now = time.time()
        if claims["iss"] != state["email"] or claims["scope"] != SCOPE or claims["aud"] != f"{base}/token":
            raise ValueError(f"claims {claims}")
        if not (claims["iat"] <= now + 60 and now < claims["exp"] <= claims["iat"] + 3600):
            raise ValueError("iat/exp")
        return claims

    def check_message(headers, body):
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in state["tokens"]:
            raise PermissionError("unknown access token")
        message = body["message"]
        if set(message) - {"token", "notification", "data"} or not isinstance(message["token"], str):
            raise ValueError(f"message {message}")
        if not isinstance(message["notification"].get("title"), str):
            raise ValueError("notification.title")
        if not all(isinstance(v, str) for v in message.get("data", {}).values()):
            raise ValueError("data values must be strings")
        return message

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body=None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("content-length", str(len(data)))
            if data:
                self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            with lock:
                state["key"] = key
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            self.answer(200, {"type": "service_account", "project_id": "test-project",
                              "private_key_id": "k1", "private_key": pem, "client_email": state["email"],
                              "client_id": "1", "token_uri": f"{base}/token"})

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/_config":
                with lock:
                    state.update(json.loads(raw))
                return self.answer(204)
            record = {"path": self.path}
            try:
                if self.path == "/token":
                    check_grant(parse_qs(raw.decode()))
                    token = "ya29." + secrets.token_urlsafe(16)
                    with lock:
                        state["tokens"].add(token)
                    status, body = 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
                elif self.path == "/v1/projects/test-project/messages:send":
                    message = check_message(headers, json.loads(raw))
                    record["message"] = message
                    if message["token"] in state["unregistered"]:
                        status, body = 404, {"error": {"code": 404, "status": "NOT_FOUND", "details": [
                            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}
                    else:
                        status, body = 200, {"name": f"projects/test-project/messages/{secrets.randbelow(10**9)}"}
                else:
                    status, body = 404, {"error": {"code": 404}}
                record["ok"] = True
            except PermissionError as e:
                record.update(ok=False, error=repr(e))
                status, body = 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
            except Exception as e:  # any other failure is a finding
                record.update(ok=False, error=repr(e))
                status, body = 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": repr(e)}}
            record["status"] = status
            with lock:
                out.write(json.dumps(record) + "\n")
            self.answer(status, body)

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
