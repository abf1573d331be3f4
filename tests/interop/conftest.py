"""Fixtures for the interoperability tests.

They start the real `infermesh model-server` binary on free loopback ports with a model
config file, wait (bounded) until every configured model version is AVAILABLE, and stop
it afterwards. The clients under test are the real TensorFlow Serving Python API
(`tensorflow-serving-api` from PyPI) over gRPC, and `requests` for REST.

Environment:
  INFERMESH_BIN         the binary (default: $CARGO_TARGET_DIR or <repo>/target, /debug/infermesh)
  INFERMESH_SHARED_DIR  the shared/ folder (default: <repo>/../shared)
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import requests

from interop_models import ONNX_MODEL, SMALL_BODY_LIMIT, TF_TWO_VERSIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0



def shared_models_dir() -> Path | None:
    shared = Path(os.environ.get("INFERMESH_SHARED_DIR", REPO_ROOT.parent / "shared"))
    d = shared / "testdata" / "tfserving"
    return d if (d / "saved_model_half_plus_two_cpu").is_dir() else None


def binary_path() -> Path:
    if os.environ.get("INFERMESH_BIN"):
        return Path(os.environ["INFERMESH_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target / "debug" / "infermesh"


@dataclass
class ModelCfg:
    name: str
    base_path: Path
    platform: str | None = None
    policy: str = "latest"  # latest | all
    labels: dict[str, int] = field(default_factory=dict)
    wait_versions: list[int] = field(default_factory=list)

    def text(self) -> str:
        lines = ["  config {", f'    name: "{self.name}"', f'    base_path: "{self.base_path}"']
        if self.platform:
            lines.append(f'    model_platform: "{self.platform}"')
        if self.policy == "all":
            lines.append("    model_version_policy { all {} }")
        for label, version in self.labels.items():
            lines.append(f'    version_labels {{ key: "{label}" value: {version} }}')
        lines.append("  }")
        return "\n".join(lines)


def model_config_text(models: list[ModelCfg]) -> str:
    return "model_config_list {\n" + "\n".join(m.text() for m in models) + "\n}\n"


def wait_ready(proc: subprocess.Popen, pending) -> tuple[bool, str]:
    """Polls `pending()` (an empty string once ready) every 0.2 s for at most
    STARTUP_TIMEOUT_S, as long as `proc` runs. Returns (ready, why not)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    why = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False, "exited"
        try:
            why = pending()
            if not why:
                return True, ""
        except requests.RequestException as e:
            why = f"not answering: {e}"
        time.sleep(0.2)
    return False, why


def _free_ports(n: int) -> list[int]:
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


class Server:
    """A running `infermesh model-server`."""

    def __init__(self, models: list[ModelCfg], workdir: Path, extra_args: tuple[str, ...] = ()):
        self.models = models
        self.extra_args = list(extra_args)
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "server.log"
        self.grpc_port = 0
        self.rest_port = 0
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

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        binary = binary_path()
        if not binary.is_file():
            pytest.fail(f"infermesh binary not found at {binary} (build it: cargo build -p infermesh)")
        cfg = self.workdir / "models.config"
        cfg.write_text(model_config_text(self.models))
        last_error = ""
        # Ports are picked by binding port 0 and releasing it; retry (bounded) if the
        # server could not bind because something else took the port in between.
        for attempt in range(3):
            self.grpc_port, self.rest_port = _free_ports(2)
            args = [
                str(binary), "model-server",
                "--port", str(self.grpc_port),
                "--rest-api-port", str(self.rest_port),
                "--model-config-file", str(cfg),
                *self.extra_args,
            ]
            log = open(self.log_path, "wb")
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            )
            log.close()
            ok, last_error = self._wait_ready()
            if ok:
                return
            if self.proc.poll() is None:
                self.stop()
                pytest.fail(f"server not ready within {STARTUP_TIMEOUT_S}s: {last_error}\n{self.log_tail()}")
            last_error = f"exited with {self.proc.returncode}, attempt {attempt + 1}/3\n{self.log_tail()}"
        pytest.fail(f"server failed to start: {last_error}")

    def _wait_ready(self) -> tuple[bool, str]:
        return wait_ready(self.proc, self._pending)

    def _pending(self) -> str:
        for m in self.models:
            r = requests.get(f"{self.rest}/v1/models/{m.name}", timeout=5)
            if r.status_code != 200:
                return f"{m.name}: {r.status_code} {r.text}"
            states = {
                int(s["version"]): s["state"] for s in r.json().get("model_version_status", [])
            }
            for v in m.wait_versions:
                if states.get(v) != "AVAILABLE":
                    return f"{m.name} version {v}: {states.get(v)}"
        return ""

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = shared_models_dir()
    if d is None:
        pytest.skip("../shared/testdata/tfserving (TF Serving's test models) is not beside the repository")
    return d


def _run_server(models: list[ModelCfg], extra_args: tuple[str, ...] = ()):
    with tempfile.TemporaryDirectory(prefix="infermesh-interop-") as tmp:
        server = Server(models, Path(tmp), extra_args)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def tf_server(shared_dir: Path):
    """The TF Serving test SavedModels, including the labelled two-version model."""
    models = [
        ModelCfg("half_plus_two", shared_dir / "saved_model_half_plus_two_cpu", "tensorflow",
                 wait_versions=[123]),
        ModelCfg("half_plus_three", shared_dir / "saved_model_half_plus_three", "tensorflow",
                 wait_versions=[123]),
        ModelCfg(TF_TWO_VERSIONS, shared_dir / "saved_model_half_plus_two_2_versions", "tensorflow",
                 policy="all", labels={"stable": 123, "canary": 124}, wait_versions=[123, 124]),
    ]
    yield from _run_server(models)


def _onnx_models() -> list[ModelCfg]:
    base = REPO_ROOT / "examples" / "models" / ONNX_MODEL
    if not (base / "1").is_dir() or not (base / "2").is_dir():
        pytest.fail(f"example models missing: {base} should hold versions 1 and 2")
    # No model_platform: the server picks the engine from the files.
    return [
        ModelCfg(ONNX_MODEL, base, None, policy="all", labels={"stable": 1, "canary": 2},
                 wait_versions=[1, 2]),
    ]


@pytest.fixture(scope="session")
def onnx_server():
    """Our ONNX example model, both versions, labelled."""
    yield from _run_server(_onnx_models())


@pytest.fixture(scope="session")
def limited_server():
    """The ONNX example model behind a small --max-body-bytes."""
    yield from _run_server(_onnx_models(), ("--max-body-bytes", str(SMALL_BODY_LIMIT)))
