"""gRPC through the mesh (`infermesh up`: gateway -> sidecar -> embedded model server) with
the real TensorFlow Serving client: Predict, GetModelStatus and GetModelMetadata answer
exactly as the model server does directly. Requests that name no version are routed by
the 50/50 split and rewritten, so their answer names the version the gateway reports in
`x-infermesh-model-version`."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from interop_mesh import mesh  # noqa: F401  (the fixture)
from interop_models import ONNX_MODEL
from tfs import RPC_TIMEOUT_S, metadata, model_stub, output_array, predict, prediction_stub, set_spec, status

X = [1.0, 2.0, 5.0]
ANSWERS = {1: [2.5, 3.0, 4.5], 2: [3.5, 4.0, 5.5]}
VERSION_HEADER = "x-infermesh-model-version"
ERROR_HEADER = "x-infermesh-error"


def _headers(call_or_error) -> dict[str, str]:
    md = list(call_or_error.initial_metadata() or []) + list(call_or_error.trailing_metadata() or [])
    return {k: v for k, v in md}


def _predict_request(version=None, label=None, name=ONNX_MODEL):
    req = predict_pb2.PredictRequest()
    set_spec(req.model_spec, name, version, label)
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(X, dtype=tf.float32))
    return req


def _error(call, req, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(req, timeout=RPC_TIMEOUT_S, **kwargs)
    return info.value


@pytest.mark.parametrize("spec,version", [
    ({"version": 1}, 1), ({"version": 2}, 2), ({"label": "stable"}, 1), ({"label": "canary"}, 2),
])
def test_predict_by_version_and_label(mesh, spec, version):  # noqa: F811
    via = predict(mesh.gateway, ONNX_MODEL, {"x": X}, **spec)
    direct = predict(mesh.direct, ONNX_MODEL, {"x": X}, **spec)
    assert via == direct
    assert via.model_spec.version.value == version
    np.testing.assert_allclose(output_array(via), ANSWERS[version])


def test_predict_unversioned_is_routed_and_rewritten(mesh):  # noqa: F811
    stub = prediction_stub(mesh.gateway)
    seen = set()
    for i in range(200):
        resp, call = stub.Predict.with_call(_predict_request(), timeout=RPC_TIMEOUT_S)
        headers = _headers(call)
        assert ERROR_HEADER not in headers, headers
        v = int(headers[VERSION_HEADER])
        assert resp.model_spec.version.value == v, f"request {i}: answer names {resp.model_spec}, header {v}"
        assert resp == predict(mesh.direct, ONNX_MODEL, {"x": X}, version=v)
        seen.add(v)
        if seen == {1, 2} and i >= 20:
            break
    assert seen == {1, 2}, f"the 50/50 split reached {seen}"


@pytest.mark.parametrize("pin,version", [("2", 2), ("canary", 2), ("stable", 1)])
def test_pin_header_as_metadata(mesh, pin, version):  # noqa: F811
    stub = prediction_stub(mesh.gateway)
    for _ in range(3):
        resp, call = stub.Predict.with_call(
            _predict_request(), timeout=RPC_TIMEOUT_S, metadata=[("x-model-version", pin)])
        assert resp.model_spec.version.value == version
        assert _headers(call)[VERSION_HEADER] == str(version)
        np.testing.assert_allclose(output_array(resp), ANSWERS[version])


@pytest.mark.parametrize("spec,versions", [
    ({}, [1, 2]), ({"version": 1}, [1]), ({"label": "canary"}, [2]),
])
def test_get_model_status(mesh, spec, versions):  # noqa: F811
    via = status(mesh.gateway, ONNX_MODEL, **spec)
    assert via == status(mesh.direct, ONNX_MODEL, **spec)
    got = sorted(s.version for s in via.model_version_status)
    assert got == versions
    assert all(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for s in via.model_version_status)


@pytest.mark.parametrize("spec", [{"version": 1}, {"version": 2}, {"label": "stable"}, {"label": "canary"}])
def test_get_model_metadata(mesh, spec):  # noqa: F811
    via = metadata(mesh.gateway, ONNX_MODEL, **spec)
    assert via == metadata(mesh.direct, ONNX_MODEL, **spec)
    assert list(via.metadata) == ["signature_def"]


def test_get_model_metadata_unversioned(mesh):  # noqa: F811
    stub = prediction_stub(mesh.gateway)
    for _ in range(4):
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        set_spec(req.model_spec, ONNX_MODEL)
        req.metadata_field.append("signature_def")
        resp, call = stub.GetModelMetadata.with_call(req, timeout=RPC_TIMEOUT_S)
        v = int(_headers(call)[VERSION_HEADER])
        assert resp.model_spec.version.value == v
        assert resp == metadata(mesh.direct, ONNX_MODEL, version=v)


def test_unknown_model_is_not_found_from_the_proxy(mesh):  # noqa: F811
    req = _predict_request(name="nope")
    via = _error(prediction_stub(mesh.gateway).Predict, req)
    direct = _error(prediction_stub(mesh.direct).Predict, req)
    assert via.code() == grpc.StatusCode.NOT_FOUND
    assert (via.code(), via.details()) == (direct.code(), direct.details())
    assert _headers(via).get(ERROR_HEADER) == "route"

    sreq = get_model_status_pb2.GetModelStatusRequest()
    set_spec(sreq.model_spec, "nope")
    via = _error(model_stub(mesh.gateway).GetModelStatus, sreq)
    direct = _error(model_stub(mesh.direct).GetModelStatus, sreq)
    assert via.code() == grpc.StatusCode.NOT_FOUND
    assert (via.code(), via.details()) == (direct.code(), direct.details())

    mreq = get_model_metadata_pb2.GetModelMetadataRequest()
    set_spec(mreq.model_spec, "nope")
    mreq.metadata_field.append("signature_def")
    via = _error(prediction_stub(mesh.gateway).GetModelMetadata, mreq)
    direct = _error(prediction_stub(mesh.direct).GetModelMetadata, mreq)
    assert via.code() == grpc.StatusCode.NOT_FOUND
    assert (via.code(), via.details()) == (direct.code(), direct.details())


def test_model_server_errors_pass_through(mesh):  # noqa: F811
    for req in (_predict_request(version=7), _predict_request(label="nope")):
        via = _error(prediction_stub(mesh.gateway).Predict, req)
        direct = _error(prediction_stub(mesh.direct).Predict, req)
        assert (via.code(), via.details()) == (direct.code(), direct.details()), req.model_spec
