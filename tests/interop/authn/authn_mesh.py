"""The mesh under test for the authn interop cases: `infermesh up --config <tmp mesh.yaml>`
on free 127.0.0.1 ports (gateway → sidecar of `tfserving-a` → embedded model server
serving `examples/models/models.config`), trusting ONE test issuer, with one ALLOW policy
for that issuer's request principals on `half_plus_two` predict and the default deny.

Also: a tally of named checks, REST predicts through the gateway (http.client, every
call with a timeout) and the gRPC Predict with the real TF Serving client. Every wait is
bounded; every process started here is stopped by `Mesh.stop()` (SIGINT, then SIGKILL)
and gets PR_SET_PDEATHSIG so it does not outlive the test if the test is killed.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL = "half_plus_two"
X = [1.0, 2.0, 5.0]
ANSWERS = {1: [2.5, 3.0, 4.5], 2: [3.5, 4.0, 5.5]}
STARTUP_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 20.0
AUTHN_CHALLENGE = 'Bearer error="invalid_token"'


def binary_path() -> Path:
    if os.environ.get("INFERMESH_BIN"):
        return Path(os.environ["INFERMESH_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target / "debug" / "infermesh"


def die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when this (Python) process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def sigterm_as_exit() -> None:
    """`timeout` sends SIGTERM: unwind through the `finally` blocks that stop processes."""
    def handler(_signum, _frame):
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, handler)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Tally:
    def __init__(self, part: str):
        self.part = part
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def summary(self) -> int:
        print(f"{self.part}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


class Resp:
    def __init__(self, status: int, headers: dict[str, str], body: str):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def brief(self) -> str:
        keep = {k: v for k, v in self.headers.items()
                if k in ("www-authenticate", "x-infermesh-error", "x-infermesh-model-version")}
        return f"{self.status} {keep} {self.body[:160]!r}"


MESH_YAML = """\
# written by tests/interop/authn/authn_mesh.py
trust_domain: cluster.local
workloads:
  - name: tfserving-a
    namespace: ml
    service_account: tfserving
    listen: 127.0.0.1:{sidecar}
    upstream: {{rest: 127.0.0.1:{rest}, grpc: 127.0.0.1:{grpc}}}
    model_server:
      model_config_file: {models_config}
models:
  - name: {model}
    served_by: tfserving-a
    versions:
      - {{version: 1, label: stable}}
      - {{version: 2, label: canary}}
    route:
      split: {{stable: 100, canary: 0}}
      timeout: 10s
gateway:
  listen: [127.0.0.1:{gateway}]
issuers:
{issuer}
policies:
  - name: test-issuer-may-predict
    action: ALLOW
    rules:
      - from: [{{request_principals: [{principals}]}}]
        to: [{{models: [{model}], apis: [predict]}}]
{when}authorization: {{default_deny: true}}
"""


class Mesh:
    """`infermesh up` trusting one issuer. `issuer_yaml` is the issuers list entry
    (indented two spaces, starting with `  - issuer: ...`)."""

    def __init__(self, issuer: str, issuer_yaml: str, when_yaml: str = ""):
        self.issuer = issuer
        self.issuer_yaml = issuer_yaml
        self.when_yaml = when_yaml
        self.tmp = tempfile.TemporaryDirectory(prefix="infermesh-authn-interop-")
        self.dir = Path(self.tmp.name)
        self.proc: subprocess.Popen | None = None
        self.gateway = self.sidecar = self.rest = self.grpc = 0
        self._channel = None

    # --- lifecycle ---
    def start(self) -> None:
        binary = binary_path()
        if not binary.is_file():
            raise RuntimeError(f"infermesh binary not found: {binary}")
        models_config = REPO_ROOT / "examples" / "models" / "models.config"
        last = ""
        for attempt in range(1, 4):  # a free port may be taken in between: bounded retry
            self.gateway, self.sidecar, self.rest, self.grpc = free_ports(4)
            config = self.dir / "mesh.yaml"
            config.write_text(MESH_YAML.format(
                sidecar=self.sidecar, rest=self.rest, grpc=self.grpc, gateway=self.gateway,
                models_config=models_config, model=MODEL, issuer=self.issuer_yaml.rstrip("\n"),
                principals=json.dumps(f"{self.issuer}/*"), when=self.when_yaml))
            with open(self.dir / "up.log", "wb") as log:
                self.proc = subprocess.Popen(
                    [str(binary), "up", "--config", str(config), "--state-dir", str(self.dir / "state")],
                    cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=dict(os.environ, NO_COLOR="1", INFERMESH_LOG=os.environ.get("INFERMESH_LOG", "info,infermesh_proxy=debug")),
                    preexec_fn=die_with_parent)
            ok, last = self._wait_ready()
            if ok:
                return
            if self.proc.poll() is None:
                self.stop()
                raise RuntimeError(f"mesh not ready within {STARTUP_TIMEOUT_S}s: {last}\n{self.log_tail()}")
            last = f"infermesh up exited with {self.proc.returncode} (attempt {attempt}/3)\n{self.log_tail()}"
            print(last, flush=True)
        raise RuntimeError(f"infermesh up failed to start: {last}")

    def _wait_ready(self) -> tuple[bool, str]:
        """Ready: both versions AVAILABLE at the model server, the sidecar listening, and
        the gateway answering a token-less predict with the policy's 403."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        why = "not started"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, "exited"
            why = self._pending()
            if not why:
                return True, ""
            time.sleep(0.2)
        return False, why

    def _pending(self) -> str:
        try:
            r = self._call(self.rest, "GET", f"/v1/models/{MODEL}", None, {})
            if r.status != 200:
                return f"model server: {r.brief()}"
            states = {int(s["version"]): s["state"] for s in (r.json() or {}).get("model_version_status", [])}
            if states.get(1) != "AVAILABLE" or states.get(2) != "AVAILABLE":
                return f"model server versions: {states}"
            if not port_open(self.sidecar):
                return "sidecar not listening"
            r = self.predict(None)
            if r.status != 403:
                return f"gateway: {r.brief()}"
            return ""
        except OSError as e:
            return f"not answering: {e}"

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self.tmp.cleanup()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.dir / "up.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "--- infermesh up (tail) ---\n" + "\n".join(text[-lines:])

    def log_lines(self, needle: str) -> list[str]:
        try:
            return [l for l in (self.dir / "up.log").read_text(errors="replace").splitlines() if needle in l]
        except OSError:
            return []

    # --- REST ---
    @staticmethod
    def _call(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Resp:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read().decode(errors="replace")
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def predict(self, token: str | None, path: str = f"/v1/models/{MODEL}:predict") -> Resp:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return self._call(self.gateway, "POST", path, json.dumps({"instances": X}).encode(), headers)

    # --- gRPC (the real TF Serving client) ---
    def grpc_predict(self, token: str | None):
        """(status code name, predictions or None, details)."""
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        if self._channel is None:
            self._channel = grpc.insecure_channel(f"127.0.0.1:{self.gateway}")
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(X, dtype=tf.float32))
        md = [("authorization", f"Bearer {token}")] if token is not None else []
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        try:
            resp = stub.Predict(req, timeout=HTTP_TIMEOUT_S, metadata=md)
        except grpc.RpcError as e:
            return e.code().name, None, e.details()
        out = next(iter(resp.outputs.values()))
        return "OK", [round(float(v), 4) for v in tf.make_ndarray(out).reshape(-1)], resp.model_spec.version.value


def expect_rest(tally: Tally, mesh: Mesh, name: str, token: str | None, want: int) -> Resp:
    """One REST predict through the gateway; checks status and, by status, the answer:
    200 → version 1's predictions (split stable: 100) and its version header; 401 → the
    Bearer invalid_token challenge and x-infermesh-error: authn; 403 → authz."""
    try:
        r = mesh.predict(token)
    except OSError as e:
        tally.check(name, False, f"transport error: {e}")
        return Resp(0, {}, "")
    ok = r.status == want
    if ok and want == 200:
        preds = (r.json() or {}).get("predictions")
        ok = preds == ANSWERS[1] and r.headers.get("x-infermesh-model-version") == "1"
    elif ok and want == 401:
        ok = (r.headers.get("www-authenticate") == AUTHN_CHALLENGE
              and r.headers.get("x-infermesh-error") == "authn")
    elif ok and want == 403:
        ok = r.headers.get("x-infermesh-error") == "authz" and "www-authenticate" not in r.headers
    tally.check(f"REST {name} -> {want}", ok, r.brief())
    return r
