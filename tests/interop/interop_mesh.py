"""The `mesh` fixture: `infermesh up --config <tmp mesh.yaml>` on free loopback ports.

The mesh runs the gateway, the sidecar of one workload and the embedded model server
serving `examples/models/models.config` (half_plus_two: version 1 = 0.5x+2, label
`stable`; version 2 = 0.5x+3, label `canary`), split 50/50 between the versions, with
the pin header `x-model-version`. Tests talk to the gateway (`mesh.gateway`) and
directly to the model server (`mesh.direct`), both objects with the `channel()` the
helpers in `tfs.py` use. Startup is bounded (120 s); the mesh is stopped with SIGINT
(SIGKILL if it does not stop within 30 s) at the end of the module.

Import the fixture into a test module: `from interop_mesh import mesh  # noqa: F401`.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
from pathlib import Path

import grpc
import pytest
import requests

from conftest import REPO_ROOT, STARTUP_TIMEOUT_S, _free_ports, binary_path, wait_ready
from interop_models import ONNX_MODEL

STOP_TIMEOUT_S = 30.0

MESH_YAML = """\
# written by tests/interop/interop_mesh.py
workloads:
  - name: tfserving-a
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
      split: {{stable: 50, canary: 50}}
      pin_header: x-model-version
      timeout: 30s
gateway:
  listen: [127.0.0.1:{gateway}]
authorization: {{default_deny: false}}  # no policies: else every request is denied
"""


class Target:
    """One gRPC/REST address, shaped like conftest's `Server` for the `tfs` helpers."""

    def __init__(self, grpc_port: int, rest_port: int):
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self._channel: grpc.Channel | None = None

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc_target)
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class Mesh:
    """A running `infermesh up`."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.gateway: Target | None = None
        self.direct: Target | None = None
        self.out_path = workdir / "up.out"
        self.err_path = workdir / "up.err"

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for p in (self.out_path, self.err_path):
            try:
                out.append(f"--- {p.name} ---")
                out.extend(p.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                out.append("(none)")
        return "\n".join(out)

    def start(self) -> None:
        binary = binary_path()
        if not binary.is_file():
            pytest.fail(f"infermesh binary not found at {binary} (build it: cargo build -p infermesh)")
        models_config = REPO_ROOT / "examples" / "models" / "models.config"
        last = ""
        # Ports are picked by binding port 0 and releasing them; retry (bounded) if one was
        # taken in between and `up` exited.
        for attempt in range(3):
            gateway, sidecar, rest, grpc_port = _free_ports(4)
            config = self.workdir / "mesh.yaml"
            config.write_text(MESH_YAML.format(
                sidecar=sidecar, rest=rest, grpc=grpc_port, gateway=gateway,
                models_config=models_config, model=ONNX_MODEL,
            ))
            with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(
                    [str(binary), "up", "--config", str(config)],
                    cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                )
            self.gateway = Target(gateway, gateway)
            self.direct = Target(grpc_port, rest)
            ok, last = self._wait_ready()
            if ok:
                return
            if self.proc.poll() is None:
                self.stop()
                pytest.fail(f"mesh not ready within {STARTUP_TIMEOUT_S}s: {last}\n{self.log_tail()}")
            last = f"exited with {self.proc.returncode}, attempt {attempt + 1}/3\n{self.log_tail()}"
        pytest.fail(f"infermesh up failed to start: {last}")

    def _wait_ready(self) -> tuple[bool, str]:
        return wait_ready(self.proc, self._pending)

    def _pending(self) -> str:
        r = requests.get(f"{self.direct.rest}/v1/models/{ONNX_MODEL}", timeout=5)
        if r.status_code != 200:
            return f"model server: {r.status_code} {r.text}"
        states = {int(s["version"]): s["state"] for s in r.json().get("model_version_status", [])}
        if states.get(1) != "AVAILABLE" or states.get(2) != "AVAILABLE":
            return f"model server versions: {states}"
        for v in (1, 2):
            r = requests.get(f"{self.gateway.rest}/v1/models/{ONNX_MODEL}/versions/{v}", timeout=5)
            if r.status_code != 200:
                return f"gateway: {r.status_code} {r.text}"
        return ""

    def stop(self) -> None:
        for t in (self.gateway, self.direct):
            if t is not None:
                t.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mesh():
    """`infermesh up` with a temporary mesh.yaml; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="infermesh-interop-mesh-") as tmp:
        m = Mesh(Path(tmp))
        try:
            m.start()
            yield m
        finally:
            m.stop()
