"""Interop: tokens minted by PyJWT (a real third-party JWT library) verified by the
infermesh Authenticator (the `verify` example, one JSON decision per stdin line).

Keys come from `cryptography`; a loopback HTTP server publishes discovery + JWKS.
Usage: python pyjwt_cases.py VERIFY_BIN   (run.sh builds the binary)."""

import base64
import hashlib
import hmac
import http.server
import json
import subprocess
import sys
import threading
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUD = "infermesh"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(alg_cls, key, kid):
    jwk = json.loads(alg_cls.to_jwk(key.public_key()))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    return jwk


class Keys:
    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks = {"keys": [
            public_jwk(RSAAlgorithm, self.rsa, "rsa-1"),
            public_jwk(ECAlgorithm, self.ec, "ec-1"),
            public_jwk(OKPAlgorithm, self.ed, "ed-1"),
        ]}


def serve(keys):
    state = {"issuer": None}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": state["issuer"], "jwks_uri": state["issuer"] + "/jwks"}
            elif self.path == "/jwks":
                body = keys.jwks
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["issuer"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state["issuer"]


class Verifier:
    def __init__(self, binary, issuer):
        self.proc = subprocess.Popen(
            [binary, "--issuer", issuer, "--discovery", "--aud", AUD, "--min-refresh", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def check(self, token):
        self.proc.stdin.write(token + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("verify binary exited")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def main():
    binary = sys.argv[1]
    keys = Keys()
    server, iss = serve(keys)
    now = int(time.time())
    claims = {"iss": iss, "sub": "alice", "aud": AUD, "iat": now, "exp": now + 300, "groups": ["ml-eng"]}
    rsa_pem = keys.rsa.public_key().public_bytes(
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
        h, _, s = sign(keys.rsa, "RS256", "rsa-1").split(".")
        return f"{h}.{b64(json.dumps(dict(claims, sub='mallory')).encode())}.{s}"

    cases = [
        ("RS256 valid", sign(keys.rsa, "RS256", "rsa-1"), 200),
        ("RS512 valid", sign(keys.rsa, "RS512", "rsa-1"), 200),
        ("PS256 valid", sign(keys.rsa, "PS256", "rsa-1"), 200),
        ("ES256 valid", sign(keys.ec, "ES256", "ec-1"), 200),
        ("EdDSA valid", sign(keys.ed, "EdDSA", "ed-1"), 200),
        ("alg none", jwt.encode(claims, None, algorithm="none"), 401),
        ("HS256 signed with the RSA public key", hs256_with_public_key(), 401),
        ("expired", sign(keys.rsa, "RS256", "rsa-1", exp=now - 300), 401),
        ("not yet valid", sign(keys.rsa, "RS256", "rsa-1", nbf=now + 300), 401),
        ("wrong issuer", sign(keys.rsa, "RS256", "rsa-1", iss="https://evil.example"), 401),
        ("wrong audience", sign(keys.rsa, "RS256", "rsa-1", aud="other"), 401),
        ("unknown kid", sign(keys.rsa, "RS256", "rsa-unknown"), 401),
        ("ES256 token with the RSA kid", sign(keys.ec, "ES256", "rsa-1"), 401),
        ("altered payload", altered(), 401),
        ("oversized", sign(keys.rsa, "RS256", "rsa-1", pad="x" * 10000), 401),
    ]
    passed = failed = 0
    verifier = Verifier(binary, iss)

    def expect(name, token, status, principal=True):
        nonlocal passed, failed
        got = verifier.check(token)
        ok = got["status"] == status and (status != 200 or (got["principal"] is not None) == principal)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got.get('status')} {got.get('principal') or got.get('error', '')}")
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"     got {got}")

    try:
        expect("no token", "-", 200, principal=False)
        for name, token, status in cases:
            expect(name, token, status)
        # Rotation at the provider: a new kid is accepted after the refetch it triggers.
        keys.jwks["keys"].insert(0, public_jwk(RSAAlgorithm, keys.rotated, "rsa-2"))
        expect("rotated key (new kid)", sign(keys.rotated, "RS256", "rsa-2"), 200)
        # JWKS outage: the server stops; cached keys keep validating.
        server.shutdown()
        server.server_close()
        expect("JWKS server stopped: cached RS256", sign(keys.rsa, "RS256", "rsa-1"), 200)
        expect("JWKS server stopped: cached rotated key", sign(keys.rotated, "RS256", "rsa-2"), 200)
        expect("JWKS server stopped: unknown kid", sign(keys.rsa, "RS256", "rsa-3"), 401)
    finally:
        verifier.close()
    print(f"pyjwt: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
