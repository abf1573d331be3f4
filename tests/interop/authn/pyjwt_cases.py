"""Interop through the real mesh: tokens minted by PyJWT (a third-party JWT library, keys
from `cryptography`) sent to the gateway of `infermesh up`, which trusts this test's
issuer through a JWKS served by a tiny HTTP server on 127.0.0.1
(`jwks_uri: http://127.0.0.1:PORT/jwks`, `audiences: [infermesh]`,
`min_refresh_interval: 1s`), with one ALLOW policy (the issuer's principals, group
`ml-eng`, predict on half_plus_two) and the default deny.

REST: valid (RS256/RS512/PS256/ES256/EdDSA) → 200 with version 1's predictions; every bad
token → 401 + `WWW-Authenticate: Bearer error="invalid_token"`; no token → 403; valid
without the group → 403. gRPC (TF Serving client): valid → OK, bad → UNAUTHENTICATED, none
→ PERMISSION_DENIED. Rotation: a new kid published at the JWKS → 200 after the refetch
it triggers. Outage: the JWKS server stopped after the mesh loaded the keys → cached
keys still 200, an unknown kid still 401.

Usage: python pyjwt_cases.py   (run.sh; INFERMESH_BIN names the binary)."""

import base64
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authn_mesh import ANSWERS, Mesh, Tally, expect_rest, sigterm_as_exit

AUD = "infermesh"
MIN_REFRESH_S = 1.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(alg_cls, key, kid):
    jwk = json.loads(alg_cls.to_jwk(key.public_key()))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    return jwk


class JwksServer:
    """GET /jwks on 127.0.0.1; counts fetches."""

    def __init__(self, keys: list):
        self.keys = keys
        self.fetches = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                outer.fetches += 1
                data = json.dumps({"keys": list(outer.keys)}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self):
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)
            self.running = False


def main() -> int:
    sigterm_as_exit()
    t = Tally("pyjwt")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = JwksServer([
        public_jwk(RSAAlgorithm, rsa_key, "rsa-1"),
        public_jwk(ECAlgorithm, ec_key, "ec-1"),
        public_jwk(OKPAlgorithm, ed_key, "ed-1"),
    ])
    iss = f"http://127.0.0.1:{jwks.port}"
    issuer_yaml = (
        f"  - issuer: {json.dumps(iss)}\n"
        f"    jwks_uri: {json.dumps(iss + '/jwks')}\n"
        f"    audiences: [{AUD}]\n"
        f"    min_refresh_interval: 1s\n")
    when_yaml = '        when: [{key: "request.auth.claims[groups]", values: [ml-eng]}]\n'
    mesh = Mesh(iss, issuer_yaml, when_yaml)

    now = int(time.time())
    claims = {"iss": iss, "sub": "alice", "aud": AUD, "iat": now, "exp": now + 600, "groups": ["ml-eng"]}
    rsa_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(key, alg, kid, **changes):
        c = dict(claims, **changes)
        return jwt.encode(c, key, algorithm=alg, headers={"kid": kid})

    def hs256_with_public_key():
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = b64(json.dumps(claims).encode())
        mac = hmac.new(rsa_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64(mac)}"

    def altered():
        h, _, s = sign(rsa_key, "RS256", "rsa-1").split(".")
        return f"{h}.{b64(json.dumps(dict(claims, sub='mallory')).encode())}.{s}"

    valid = [
        ("RS256", sign(rsa_key, "RS256", "rsa-1")),
        ("RS512", sign(rsa_key, "RS512", "rsa-1")),
        ("PS256", sign(rsa_key, "PS256", "rsa-1")),
        ("ES256", sign(ec_key, "ES256", "ec-1")),
        ("EdDSA", sign(ed_key, "EdDSA", "ed-1")),
    ]
    oversized = sign(rsa_key, "RS256", "rsa-1", pad="x" * 10000)
    bad = [
        ("alg none", jwt.encode(claims, None, algorithm="none")),
        ("HS256 signed with the RSA public key", hs256_with_public_key()),
        ("expired", sign(rsa_key, "RS256", "rsa-1", exp=now - 300)),
        ("not yet valid", sign(rsa_key, "RS256", "rsa-1", nbf=now + 300)),
        ("wrong issuer", sign(rsa_key, "RS256", "rsa-1", iss="https://evil.example")),
        ("wrong audience", sign(rsa_key, "RS256", "rsa-1", aud="other")),
        ("unknown kid", sign(rsa_key, "RS256", "rsa-unknown")),
        ("ES256 token with the RSA kid", sign(ec_key, "ES256", "rsa-1")),
        ("altered payload", altered()),
        (f"oversized ({len(oversized)} bytes)", oversized),
    ]
    try:
        mesh.start()
        print(f"mesh up: gateway 127.0.0.1:{mesh.gateway}, issuer {iss}, JWKS fetches so far {jwks.fetches}", flush=True)
        expect_rest(t, mesh, "no token", None, 403)
        for name, token in valid:
            expect_rest(t, mesh, f"PyJWT {name} valid", token, 200)
        expect_rest(t, mesh, "valid token without group ml-eng", sign(rsa_key, "RS256", "rsa-1", groups=["other"]), 403)
        for name, token in bad:
            expect_rest(t, mesh, name, token, 401)

        code, preds, version = mesh.grpc_predict(valid[0][1])
        t.check("gRPC Predict, valid RS256 token -> OK", code == "OK" and preds == ANSWERS[1] and version == 1,
                f"{code} {preds} version {version}")
        code, _, details = mesh.grpc_predict(sign(rsa_key, "RS256", "rsa-1", exp=now - 300))
        t.check("gRPC Predict, expired token -> UNAUTHENTICATED", code == "UNAUTHENTICATED", f"{code} {details}")
        code, _, details = mesh.grpc_predict(altered())
        t.check("gRPC Predict, altered payload -> UNAUTHENTICATED", code == "UNAUTHENTICATED", f"{code} {details}")
        code, _, details = mesh.grpc_predict(None)
        t.check("gRPC Predict, no token -> PERMISSION_DENIED", code == "PERMISSION_DENIED", f"{code} {details}")

        # Rotation at the issuer: a new key is published (the old one kept). After
        # min_refresh_interval since the last refetch (the unknown-kid case above), the
        # first token with the new kid triggers a refetch and must get 200 at once.
        time.sleep(MIN_REFRESH_S + 0.5)
        jwks.keys.insert(0, public_jwk(RSAAlgorithm, rotated, "rsa-2"))
        before = jwks.fetches
        expect_rest(t, mesh, "rotated key (new kid rsa-2), first request", sign(rotated, "RS256", "rsa-2"), 200)
        print(f"     JWKS fetches for the new kid: {jwks.fetches - before}", flush=True)
        expect_rest(t, mesh, "old kid rsa-1 still published", sign(rsa_key, "RS256", "rsa-1"), 200)

        # Outage: the JWKS server stops; the keys the mesh holds keep validating.
        jwks.stop()
        time.sleep(MIN_REFRESH_S + 0.5)  # so a kid miss below really tries the dead server
        expect_rest(t, mesh, "JWKS server stopped: cached RS256", sign(rsa_key, "RS256", "rsa-1"), 200)
        expect_rest(t, mesh, "JWKS server stopped: cached rotated key", sign(rotated, "RS256", "rsa-2"), 200)
        expect_rest(t, mesh, "JWKS server stopped: cached EdDSA", sign(ed_key, "EdDSA", "ed-1"), 200)
        started = time.monotonic()
        expect_rest(t, mesh, "JWKS server stopped: unknown kid", sign(rsa_key, "RS256", "rsa-3"), 401)
        took = time.monotonic() - started
        t.check("JWKS server stopped: unknown kid answered within 5 s", took < 5.0, f"{took:.2f} s")
        failed_fetches = mesh.log_lines("JWKS fetch failed")
        t.check("JWKS server stopped: the kid miss tried the JWKS and kept the cached keys",
                len(failed_fetches) >= 1, failed_fetches[-1][-200:] if failed_fetches else "no 'JWKS fetch failed' log line")
        code, preds, _ = mesh.grpc_predict(sign(rsa_key, "RS256", "rsa-1"))
        t.check("JWKS server stopped: gRPC valid -> OK", code == "OK" and preds == ANSWERS[1], f"{code} {preds}")
    except Exception as e:  # noqa: BLE001 - any harness error is a failure, with the log
        t.check("harness", False, f"{type(e).__name__}: {e}")
    finally:
        if t.failed:
            print(mesh.log_tail(), flush=True)
        mesh.close()
        jwks.stop()
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
