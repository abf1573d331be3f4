"""gRPC error codes and messages, as TF Serving's clients see them."""

import grpc
import numpy as np

from interop_models import ONNX_MODEL, SMALL_BODY_LIMIT, TF_TWO_VERSIONS
from tfs import metadata, output_array, predict, rpc_error, signature_def_map, status

X = [1.0, 2.0, 5.0]


def test_unknown_model(tf_server):
    err = rpc_error(predict, tf_server, "nope", {"x": X})
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Latest(nope)"


def test_unknown_version(tf_server):
    err = rpc_error(predict, tf_server, "half_plus_two", {"x": X}, version=50)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Specific(half_plus_two, 50)"


def test_unknown_label(tf_server):
    err = rpc_error(predict, tf_server, TF_TWO_VERSIONS, {"x": X}, label="nope")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "Unrecognized servable version label: nope"


def test_unknown_signature(tf_server):
    err = rpc_error(predict, tf_server, "half_plus_two", {"x": X}, signature="nope")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == 'Serving signature key "nope" not found.'


def test_unknown_input(tf_server):
    err = rpc_error(predict, tf_server, "half_plus_two", {"nope": X})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nope" in err.details()


def test_metadata_without_field(tf_server):
    err = rpc_error(metadata, tf_server, "half_plus_two", fields=())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "GetModelMetadataRequest must specify at least one metadata_field"


def test_metadata_unsupported_field(tf_server):
    err = rpc_error(metadata, tf_server, "half_plus_two", fields=("nope",))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_unknown_model(tf_server):
    err = rpc_error(metadata, tf_server, "nope")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Latest(nope)"


def test_status_unknown_model(tf_server):
    err = rpc_error(status, tf_server, "nope")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Could not find any versions of model nope"


def test_status_unknown_version(tf_server):
    err = rpc_error(status, tf_server, "half_plus_two", version=50)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Could not find version 50 of model half_plus_two"


def test_onnx_unknown_signature(onnx_server):
    err = rpc_error(predict, onnx_server, ONNX_MODEL, {"x": X}, signature="nope")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == 'Serving signature key "nope" not found.'


def test_message_above_body_limit(limited_server):
    # --max-body-bytes applies to gRPC too: RESOURCE_EXHAUSTED, and small requests still work.
    x = np.ones((SMALL_BODY_LIMIT, 1), dtype=np.float32)  # 4 bytes each: 4x the limit
    err = rpc_error(predict, limited_server, ONNX_MODEL, {_input_name(limited_server): x}, version=1)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    resp = predict(limited_server, ONNX_MODEL, {_input_name(limited_server): [1.0]}, version=1)
    np.testing.assert_allclose(output_array(resp), [2.5])


def _input_name(server) -> str:
    sigs = signature_def_map(metadata(server, ONNX_MODEL, version=1)).signature_def
    return next(iter(sigs["serving_default"].inputs))
