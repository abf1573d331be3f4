"""Interop through the real mesh with a real OIDC provider: npm `oidc-provider`
(oidc_provider.mjs, run by node on 127.0.0.1) issues JWT access tokens by the
client-credentials grant (requested here over HTTP, as a client would); `infermesh up`
trusts the provider's issuer URL with OIDC discovery (`audiences: [infermesh]`,
`refresh_interval: 2s`, `min_refresh_interval: 1s`), one ALLOW policy for its request principals on
half_plus_two predict, and the default deny.

Valid token → 200 (REST, right predictions) and OK (gRPC). Tokens derived from the
provider's (alg none, HS256 signed with its published RSA key, altered payload, truncated
signature, unknown kid, oversized) and a token the provider issued for another audience
→ 401 with the Bearer invalid_token challenge; gRPC bad token → UNAUTHENTICATED; no token
→ 403. Provider stopped after the mesh loaded its keys → still 200, also after failed
periodic refreshes. Provider restarted
with a rotated key → the new kid gets 200 after the refetch it triggers.

Usage: python oidc_provider_cases.py   (run.sh; INFERMESH_BIN names the binary, node on PATH)."""

import base64
import hashlib
import hmac
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from authn_mesh import ANSWERS, Mesh, Tally, die_with_parent, expect_rest, sigterm_as_exit

HERE = Path(__file__).resolve().parent
CLIENT_ID, CLIENT_SECRET = "batch-job", "batch-secret-0123456789"
AUD = "infermesh"
MIN_REFRESH_S = 1.0
REFRESH_S = 2.0
REPLY_TIMEOUT_S = 30.0
REPLY_PREFIX = "@@infermesh "


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parts(token: str):
    h, p, s = token.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p)), s


class ProviderProc:
    """node oidc_provider.mjs, driven by line commands; every reply awaited with a timeout."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["node", str(HERE / "oidc_provider.mjs")], cwd=HERE, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=die_with_parent)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if not line.startswith(REPLY_PREFIX):  # the provider's own notices
                print(f"     [node] {line.rstrip()}", file=sys.stderr, flush=True)
                continue
            try:
                self.replies.put(json.loads(line[len(REPLY_PREFIX):]))
            except ValueError:
                self.replies.put({"event": "error", "message": f"bad line {line!r}"})
        self.replies.put({"event": "exited"})

    def reply(self, want: str) -> dict:
        try:
            got = self.replies.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"oidc-provider: no {want!r} within {REPLY_TIMEOUT_S}s") from None
        if got.get("event") != want:
            raise RuntimeError(f"oidc-provider: wanted {want!r}, got {got}")
        return got

    def command(self, cmd: str, want: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.reply(want)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)


def client_credentials(issuer: str, resource: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "scope": "predict"}
    if resource:
        form["resource"] = resource
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    req = urllib.request.Request(
        f"{issuer}/token", data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    return body["access_token"]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    sigterm_as_exit()
    t = Tally("oidc-provider")
    op = ProviderProc()
    mesh = None
    try:
        started = op.reply("started")
        iss = started["issuer"]
        issuer_yaml = (
            f"  - issuer: {json.dumps(iss)}\n"
            f"    audiences: [{AUD}]\n"
            f"    refresh_interval: 2s\n"
            f"    min_refresh_interval: 1s\n")
        mesh = Mesh(iss, issuer_yaml)
        mesh.start()
        print(f"mesh up: gateway 127.0.0.1:{mesh.gateway}, issuer {iss} (discovery)", flush=True)

        t1 = client_credentials(iss)
        h1, c1, s1 = parts(t1)
        print(f"     provider token: alg {h1.get('alg')} typ {h1.get('typ')} kid {h1.get('kid')} "
              f"iss {c1.get('iss')} sub {c1.get('sub')} aud {c1.get('aud')}", flush=True)
        jwks_uri = get_json(f"{iss}/.well-known/openid-configuration")["jwks_uri"]
        rsa_jwk = next(k for k in get_json(jwks_uri)["keys"] if k.get("kid") == h1.get("kid"))
        rsa_pem = RSAAlgorithm.from_jwk(rsa_jwk).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        head, payload, sig = t1.split(".")

        def with_header(**changes):
            return b64(json.dumps(dict(h1, **changes)).encode())

        def hs256_with_public_key():
            hh = with_header(alg="HS256")
            mac = hmac.new(rsa_pem, f"{hh}.{payload}".encode(), hashlib.sha256).digest()
            return f"{hh}.{payload}.{b64(mac)}"

        bad = [
            ("alg none (provider token, header rewritten)", f"{with_header(alg='none')}.{payload}."),
            ("HS256 signed with the provider's published RSA key", hs256_with_public_key()),
            ("altered payload", f"{head}.{b64(json.dumps(dict(c1, sub='mallory')).encode())}.{sig}"),
            ("truncated signature", f"{head}.{payload}.{sig[:20]}"),
            ("unknown kid", f"{with_header(kid='op-key-unknown')}.{payload}.{sig}"),
            ("oversized", f"{head}.{b64(json.dumps(dict(c1, pad='x' * 10000)).encode())}.{sig}"),
            ("provider token for audience 'other' (resource urn:other)", client_credentials(iss, "urn:other")),
        ]

        expect_rest(t, mesh, "no token", None, 403)
        expect_rest(t, mesh, f"client-credentials token (kid {h1.get('kid')})", t1, 200)
        for name, token in bad:
            expect_rest(t, mesh, name, token, 401)
        code, preds, version = mesh.grpc_predict(t1)
        t.check("gRPC Predict, provider token -> OK", code == "OK" and preds == ANSWERS[1] and version == 1,
                f"{code} {preds} version {version}")
        code, _, details = mesh.grpc_predict(bad[2][1])
        t.check("gRPC Predict, altered payload -> UNAUTHENTICATED", code == "UNAUTHENTICATED", f"{code} {details}")

        # Outage: the provider stops (discovery and JWKS gone); cached keys keep validating,
        # also after periodic refreshes (refresh_interval: 2s) have failed meanwhile.
        op.command("stop", "stopped")
        time.sleep(REFRESH_S * 2 + 0.5)
        failed_fetches = mesh.log_lines("JWKS fetch failed")
        t.check("provider stopped: periodic refreshes failed and kept the cached keys",
                len(failed_fetches) >= 1, failed_fetches[-1][-160:] if failed_fetches else "no 'JWKS fetch failed' log line")
        expect_rest(t, mesh, "provider stopped: cached key", t1, 200)
        code, preds, _ = mesh.grpc_predict(t1)
        t.check("provider stopped: gRPC provider token -> OK", code == "OK" and preds == ANSWERS[1], f"{code} {preds}")
        expect_rest(t, mesh, "provider stopped: unknown kid", bad[4][1], 401)

        # Rotation: the provider returns on the same port signing with a new key (the old
        # one still published); the new kid must get 200 once the mesh refetched.
        rotated = op.command("rotate", "started")
        t2 = client_credentials(iss)
        kid2 = parts(t2)[0].get("kid")
        t.check("provider signs with the rotated key", kid2 == "op-key-2" == rotated["kid"], f"kid {kid2}")
        # A periodic refresh that failed just before the restart counts against
        # min_refresh_interval, so the first kid miss may be rate-limited (401): poll,
        # bounded by min_refresh_interval + refresh_interval + margin.
        deadline = time.monotonic() + MIN_REFRESH_S + REFRESH_S + 2.0
        t0, statuses = time.monotonic(), []
        while True:
            r = mesh.predict(t2)
            statuses.append(r.status)
            if r.status != 401 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        expect_rest(t, mesh, f"rotated key (new kid {kid2}) after refresh "
                    f"({time.monotonic() - t0:.2f} s, statuses seen: {statuses})", t2, 200)
        expect_rest(t, mesh, "old key still published", t1, 200)
        code, preds, _ = mesh.grpc_predict(t2)
        t.check("gRPC Predict, rotated-key token -> OK", code == "OK" and preds == ANSWERS[1], f"{code} {preds}")
    except Exception as e:  # noqa: BLE001 - any harness error is a failure, with the log
        t.check("harness", False, f"{type(e).__name__}: {e}")
    finally:
        if mesh is not None:
            if t.failed:
                print(mesh.log_tail(), flush=True)
            mesh.close()
        op.close()
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
