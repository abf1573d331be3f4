"""gRPC Predict with the real TF Serving client (tensorflow-serving-api)."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from interop_models import ONNX_MODEL, TF_TWO_VERSIONS
from tfs import example, metadata, output_array, predict, signature_def_map

X = [1.0, 2.0, 5.0]
HALF_PLUS_TWO = [2.5, 3.0, 4.5]
HALF_PLUS_THREE = [3.5, 4.0, 5.5]


def test_predict_half_plus_two(tf_server):
    resp = predict(tf_server, "half_plus_two", {"x": X}, signature="serving_default")
    y = output_array(resp, "y")
    np.testing.assert_allclose(y, HALF_PLUS_TWO)
    assert resp.model_spec.name == "half_plus_two"
    assert resp.model_spec.version.value == 123


def test_predict_batch_in_signature_shape(tf_server):
    resp = predict(tf_server, "half_plus_two", {"x": np.array(X, dtype=np.float32).reshape(3, 1)})
    y = output_array(resp, "y")
    assert y.shape == (3, 1)
    np.testing.assert_allclose(y.ravel(), HALF_PLUS_TWO)


def test_predict_float_val_encoding(tf_server):
    # Clients that fill float_val instead of tensor_content must work too.
    t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    t.tensor_shape.dim.add().size = 3
    t.float_val.extend(X)
    np.testing.assert_allclose(output_array(predict(tf_server, "half_plus_two", {"x": t}), "y"), HALF_PLUS_TWO)


def test_predict_empty_signature_is_serving_default(tf_server):
    resp = predict(tf_server, "half_plus_two", {"x": X}, signature="")
    np.testing.assert_allclose(output_array(resp, "y"), HALF_PLUS_TWO)


def test_predict_output_filter(tf_server):
    resp = predict(tf_server, "half_plus_two", {"x": X}, output_filter=["y"])
    assert list(resp.outputs) == ["y"]
    np.testing.assert_allclose(output_array(resp, "y"), HALF_PLUS_TWO)


def test_predict_other_signature(tf_server):
    resp = predict(tf_server, "half_plus_two", {"inputs": X}, signature="regress_x2_to_y3")
    np.testing.assert_allclose(output_array(resp, "outputs"), HALF_PLUS_THREE)


def test_predict_half_plus_three(tf_server):
    resp = predict(tf_server, "half_plus_three", {"x": X})
    np.testing.assert_allclose(output_array(resp, "y"), HALF_PLUS_THREE)
    assert resp.model_spec.version.value == 123


@pytest.mark.parametrize("version", [123, 124])
def test_predict_two_versions_by_version(tf_server, version):
    resp = predict(tf_server, TF_TWO_VERSIONS, {"x": X}, version=version)
    np.testing.assert_allclose(output_array(resp, "y"), HALF_PLUS_TWO)
    assert resp.model_spec.name == TF_TWO_VERSIONS
    assert resp.model_spec.version.value == version


@pytest.mark.parametrize("label,version", [("stable", 123), ("canary", 124)])
def test_predict_two_versions_by_label(tf_server, label, version):
    resp = predict(tf_server, TF_TWO_VERSIONS, {"x": X}, label=label)
    np.testing.assert_allclose(output_array(resp, "y"), HALF_PLUS_TWO)
    assert resp.model_spec.version.value == version


def test_predict_two_versions_latest(tf_server):
    resp = predict(tf_server, TF_TWO_VERSIONS, {"x": X})
    assert resp.model_spec.version.value == 124


def _onnx_input_name(server) -> str:
    sigs = signature_def_map(metadata(server, ONNX_MODEL, version=1)).signature_def
    inputs = list(sigs["serving_default"].inputs)
    assert len(inputs) == 1, inputs
    return inputs[0]


@pytest.mark.parametrize(
    "version,label,want",
    [(1, None, HALF_PLUS_TWO), (2, None, HALF_PLUS_THREE), (None, "stable", HALF_PLUS_TWO),
     (None, "canary", HALF_PLUS_THREE), (None, None, HALF_PLUS_THREE)],
)
def test_predict_onnx_example(onnx_server, version, label, want):
    name = _onnx_input_name(onnx_server)
    resp = predict(onnx_server, ONNX_MODEL, {name: X}, version=version, label=label)
    np.testing.assert_allclose(output_array(resp), want)
    assert resp.model_spec.name == ONNX_MODEL
    assert resp.model_spec.version.value == (version or {"stable": 1, "canary": 2, None: 2}[label])


def test_predict_serialized_examples_as_string_tensor(tf_server):
    # classify_x_to_y takes DT_STRING serialized tf.Examples; Predict can feed them directly.
    examples = [example(x=20.0).SerializeToString(), example(x=2.0).SerializeToString()]
    resp = predict(tf_server, "half_plus_two", {"inputs": tf.make_tensor_proto(examples, dtype=tf.string)},
                   signature="classify_x_to_y")
    np.testing.assert_allclose(output_array(resp, "scores").ravel(), [12.0, 3.0])


def test_predict_message_above_grpc_default_4mb(tf_server):
    # TF Serving accepts gRPC messages far above gRPC's 4 MiB default; a client that raises
    # its own limits must get an answer for a ~6 MB request and response.
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(tf_server.grpc_target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "half_plus_two"
        x = np.arange(1_500_000, dtype=np.float32).reshape(-1, 1) / 1000.0
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
        resp = stub.Predict(req, timeout=60)
    y = tf.make_ndarray(resp.outputs["y"])
    assert y.shape == x.shape
    np.testing.assert_allclose(y, 0.5 * x + 2.0, rtol=1e-6)
