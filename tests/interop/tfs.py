"""Small helpers around the real TensorFlow Serving Python client (tensorflow-serving-api)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import tensor_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

RPC_TIMEOUT_S = 30.0


def prediction_stub(server) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(server.channel())


def model_stub(server) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(server.channel())


def set_spec(spec, name: str, version: int | None = None, label: str | None = None,
             signature: str | None = None) -> None:
    spec.name = name
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    if signature is not None:
        spec.signature_name = signature


def predict(server, name: str, inputs: dict[str, object], *, version=None, label=None,
            signature=None, output_filter=()) -> predict_pb2.PredictResponse:
    req = predict_pb2.PredictRequest()
    set_spec(req.model_spec, name, version, label, signature)
    for key, value in inputs.items():
        if isinstance(value, tensor_pb2.TensorProto):
            req.inputs[key].CopyFrom(value)
        else:
            req.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=tf.float32))
    req.output_filter.extend(output_filter)
    return prediction_stub(server).Predict(req, timeout=RPC_TIMEOUT_S)


def output_array(resp: predict_pb2.PredictResponse, key: str | None = None) -> np.ndarray:
    if key is None:
        assert len(resp.outputs) == 1, f"expected one output, got {list(resp.outputs)}"
        key = next(iter(resp.outputs))
    return tf.make_ndarray(resp.outputs[key])


def metadata(server, name: str, *, version=None, label=None, fields=("signature_def",)):
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    set_spec(req.model_spec, name, version, label)
    req.metadata_field.extend(fields)
    return prediction_stub(server).GetModelMetadata(req, timeout=RPC_TIMEOUT_S)


def signature_def_map(resp) -> get_model_metadata_pb2.SignatureDefMap:
    any_msg = resp.metadata["signature_def"]
    assert any_msg.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap", any_msg.type_url
    out = get_model_metadata_pb2.SignatureDefMap()
    assert any_msg.Unpack(out)
    return out


def status(server, name: str, *, version=None, label=None):
    req = get_model_status_pb2.GetModelStatusRequest()
    set_spec(req.model_spec, name, version, label)
    return model_stub(server).GetModelStatus(req, timeout=RPC_TIMEOUT_S)


def example(**features: float) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in features.items()
    }))


def classify(server, name: str, signature: str, examples):
    req = classification_pb2.ClassificationRequest()
    set_spec(req.model_spec, name, signature=signature)
    req.input.example_list.examples.extend(examples)
    return prediction_stub(server).Classify(req, timeout=RPC_TIMEOUT_S)


def regress(server, name: str, signature: str, examples):
    req = regression_pb2.RegressionRequest()
    set_spec(req.model_spec, name, signature=signature)
    req.input.example_list.examples.extend(examples)
    return prediction_stub(server).Regress(req, timeout=RPC_TIMEOUT_S)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def skip_if_unimplemented(err: grpc.RpcError, what: str) -> None:
    if err.code() == grpc.StatusCode.UNIMPLEMENTED:
        pytest.skip(f"server answers UNIMPLEMENTED for {what}: {err.details()}")
