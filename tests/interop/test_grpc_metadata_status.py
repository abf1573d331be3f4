"""gRPC GetModelMetadata and ModelService/GetModelStatus with the real TF Serving client."""

import json

import pytest
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from interop_models import ONNX_MODEL, TF_TWO_VERSIONS
from tfs import metadata, signature_def_map, status

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def _golden(shared_dir):
    data = json.loads((shared_dir / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    want = get_model_metadata_pb2.SignatureDefMap()
    json_format.ParseDict(data["metadata"]["signature_def"], want)
    return data, want


def _assert_same(got, want):
    assert got == want, f"signature_def differs\n--- got ---\n{got}\n--- want ---\n{want}"


@pytest.mark.parametrize("spec", [{"version": 123}, {"label": "stable"}])
def test_metadata_equals_golden(tf_server, shared_dir, spec):
    data, want = _golden(shared_dir)
    resp = metadata(tf_server, TF_TWO_VERSIONS, **spec)
    assert resp.model_spec.name == data["model_spec"]["name"]
    assert resp.model_spec.version.value == int(data["model_spec"]["version"])
    assert list(resp.metadata) == ["signature_def"]
    _assert_same(signature_def_map(resp), want)


def test_metadata_half_plus_two_latest(tf_server, shared_dir):
    # half_plus_two_cpu has the signatures of the 2-version model except classify_x2_to_y3
    # (see shared/testdata/tfserving/README.md); each must equal its golden counterpart.
    _, want = _golden(shared_dir)
    resp = metadata(tf_server, "half_plus_two")
    assert resp.model_spec.name == "half_plus_two"
    assert resp.model_spec.version.value == 123
    got = signature_def_map(resp).signature_def
    assert sorted(got) == sorted(
        ["serving_default", "regress_x_to_y", "regress_x_to_y2", "classify_x_to_y", "regress_x2_to_y3"]
    )
    for name, sig in got.items():
        assert sig == want.signature_def[name], f"{name}\n--- got ---\n{sig}\n--- want ---\n{want.signature_def[name]}"


def test_metadata_onnx_example(onnx_server):
    resp = metadata(onnx_server, ONNX_MODEL, version=2)
    assert resp.model_spec.version.value == 2
    sig = signature_def_map(resp).signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert len(sig.inputs) == 1 and len(sig.outputs) == 1
    for info in list(sig.inputs.values()) + list(sig.outputs.values()):
        assert info.dtype == 1  # DT_FLOAT


def _versions(resp):
    return {s.version: s for s in resp.model_version_status}


def test_status_both_versions_available(tf_server):
    got = _versions(status(tf_server, TF_TWO_VERSIONS))
    assert sorted(got) == [123, 124]
    for s in got.values():
        assert s.state == AVAILABLE
        assert s.status.error_code == 0  # OK
        assert s.status.error_message == ""


@pytest.mark.parametrize("spec,version", [({"version": 123}, 123), ({"label": "canary"}, 124)])
def test_status_one_version(tf_server, spec, version):
    got = _versions(status(tf_server, TF_TWO_VERSIONS, **spec))
    assert list(got) == [version]
    assert got[version].state == AVAILABLE


def test_status_onnx_example(onnx_server):
    got = _versions(status(onnx_server, ONNX_MODEL))
    assert sorted(got) == [1, 2]
    assert all(s.state == AVAILABLE for s in got.values())
