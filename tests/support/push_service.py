"""A Web Push service on loopback that also plays the browsers, checking every push with
independent implementations: PyPI's `http_ece` decrypts it (RFC 8291 / RFC 8188 aes128gcm) with
the browser's own private key, and `cryptography` verifies the VAPID token (RFC 8292, ES256)
against the key the request names and the key the server announced.

GET /subscribe/<name>       makes a browser: a P-256 key pair and an auth secret; answers the
                            subscription as PushSubscription.toJSON() gives it.
POST /_config {"gone": [names], "vapid_public_key": "...", "slow": [names], "slow_secs": n}
                            names answered 410 (unsubscribed); the server's expected key;
                            names answered only after slow_secs (a push service that hangs).
POST /push/<name>           a push: appended to --out as one JSON line
                            {"name", "ok", "error", "status", "payload", "claims", "headers"}.
"""

import argparse
import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

browsers = {}
state = {"gone": [], "vapid_public_key": None, "slow": [], "slow_secs": 8}
lock = threading.Lock()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_vapid(header, origin):
    """The claims of a valid `vapid t=..., k=...` header; raises otherwise."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError(f"scheme {scheme!r}")
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    token, key = fields["t"], fields["k"]
    if state["vapid_public_key"] and key != state["vapid_public_key"]:
        raise ValueError("k is not the key the server announced")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
    head, claims, signature = token.split(".")
    if json.loads(unb64(head)).get("alg") != "ES256":
        raise ValueError("alg is not ES256")
    raw = unb64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = json.loads(unb64(claims))
    if claims.get("aud") != origin:
        raise ValueError(f"aud {claims.get('aud')!r} is not {origin!r}")
    if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
        raise ValueError("exp is not within 24 hours")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise ValueError("sub is not mailto: or https:")
    return claims


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = open(args.out, "a", buffering=1)
    origin = f"http://127.0.0.1:{args.port}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body=b""):
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            if body:
                self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            name = self.path.removeprefix("/subscribe/")
            private = ec.generate_private_key(ec.SECP256R1())
            auth = os.urandom(16)
            with lock:
                browsers[name] = (private, auth)
            public = private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            body = {"endpoint": f"{origin}/push/{name}", "keys": {"p256dh": b64(public), "auth": b64(auth)}}
            self.answer(200, json.dumps(body).encode())

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/_config":
                with lock:
                    state.update(json.loads(body))
                return self.answer(204)
            name = self.path.removeprefix("/push/")
            with lock:
                hang = state["slow_secs"] if name in state["slow"] else 0
            time.sleep(hang)
            headers = {k.lower(): v for k, v in self.headers.items()}
            record = {"name": name, "headers": headers}
            try:
                record["claims"] = check_vapid(headers.get("authorization", ""), origin)
                if headers.get("content-encoding") != "aes128gcm":
                    raise ValueError("content-encoding is not aes128gcm")
                if int(headers.get("ttl", "-1")) < 0:
                    raise ValueError("no TTL")
                private, auth = browsers[name]
                plain = http_ece.decrypt(body, private_key=private, auth_secret=auth, version="aes128gcm")
                record.update(ok=True, payload=json.loads(plain))
            except (InvalidSignature, Exception) as e:  # any failure is a finding
                record.update(ok=False, error=repr(e))
            with lock:
                if name in state["gone"]:
                    status = 410
                elif not record["ok"]:
                    status = 400
                else:
                    status = 201
                record["status"] = status
                out.write(json.dumps(record) + "\n")
            self.answer(status)

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
