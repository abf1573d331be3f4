#!/usr/bin/env python3
"""Writes the gRPC message bodies the benchmark sends and the ceiling answers with.

    python3 -m venv bench/out/venv && bench/out/venv/bin/pip install protobuf
    bench/out/venv/bin/python bench/grpc/make_bodies.py

Outputs (committed, so a benchmark run needs no Python packages):
  predict_request.grpc   one gRPC frame (1-byte flag 0, 4-byte big-endian length, message)
                         holding tensorflow.serving.PredictRequest{
                           model_spec { name: "half_plus_two" version { value: 1 } }
                           inputs { key: "x" value { dtype: DT_FLOAT
                             tensor_shape { dim { size: 3 } } float_val: [1, 2, 5] } } }
  predict_response.grpc  one gRPC frame holding the PredictResponse the ceiling server
                         answers gRPC requests with: outputs {"y": [2.5, 3, 4.5]} and the
                         resolved model_spec (version 1, signature "serving_default").

The messages are encoded by the protobuf runtime from descriptors declared below with the
field numbers of tensorflow_serving/apis/{model,predict}.proto and
tensorflow/core/framework/{tensor,tensor_shape,types}.proto (see
shared TFSERVING-API.md), only the fields used here.
"""

import os
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None, packed=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if packed is not None:
        f.options.packed = packed
    return f


def map_entry(msg, entry_name, value_type):
    e = msg.nested_type.add(name=entry_name)
    e.options.map_entry = True
    field(e, "key", 1, F.TYPE_STRING)
    field(e, "value", 2, F.TYPE_MESSAGE, type_name=value_type)


def build_pool():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="infermesh_bench.proto", package="tensorflow.serving", syntax="proto3"
    )
    # google.protobuf.Int64Value { int64 value = 1; } (declared locally, same wire format)
    i64 = fdp.message_type.add(name="Int64Value")
    field(i64, "value", 1, F.TYPE_INT64)

    dim = fdp.message_type.add(name="Dim")  # TensorShapeProto.Dim
    field(dim, "size", 1, F.TYPE_INT64)
    field(dim, "name", 2, F.TYPE_STRING)

    shape = fdp.message_type.add(name="TensorShapeProto")
    field(shape, "dim", 2, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".tensorflow.serving.Dim")
    field(shape, "unknown_rank", 3, F.TYPE_BOOL)

    tensor = fdp.message_type.add(name="TensorProto")
    field(tensor, "dtype", 1, F.TYPE_INT32)  # enum DataType on the wire: varint
    field(tensor, "tensor_shape", 2, F.TYPE_MESSAGE, type_name=".tensorflow.serving.TensorShapeProto")
    field(tensor, "float_val", 5, F.TYPE_FLOAT, F.LABEL_REPEATED, packed=True)

    spec = fdp.message_type.add(name="ModelSpec")
    field(spec, "name", 1, F.TYPE_STRING)
    field(spec, "version", 2, F.TYPE_MESSAGE, type_name=".tensorflow.serving.Int64Value")
    field(spec, "signature_name", 3, F.TYPE_STRING)

    req = fdp.message_type.add(name="PredictRequest")
    field(req, "model_spec", 1, F.TYPE_MESSAGE, type_name=".tensorflow.serving.ModelSpec")
    map_entry(req, "InputsEntry", ".tensorflow.serving.TensorProto")
    field(req, "inputs", 2, F.TYPE_MESSAGE, F.LABEL_REPEATED,
          ".tensorflow.serving.PredictRequest.InputsEntry")

    resp = fdp.message_type.add(name="PredictResponse")
    map_entry(resp, "OutputsEntry", ".tensorflow.serving.TensorProto")
    field(resp, "outputs", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED,
          ".tensorflow.serving.PredictResponse.OutputsEntry")
    field(resp, "model_spec", 2, F.TYPE_MESSAGE, type_name=".tensorflow.serving.ModelSpec")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return pool


DT_FLOAT = 1


def fill_tensor(t, values):
    t.dtype = DT_FLOAT
    t.tensor_shape.dim.add(size=len(values))
    t.float_val.extend(values)


def grpc_frame(message_bytes):
    return struct.pack(">BI", 0, len(message_bytes)) + message_bytes


def main():
    pool = build_pool()
    cls = lambda name: message_factory.GetMessageClass(  # noqa: E731
        pool.FindMessageTypeByName("tensorflow.serving." + name))
    PredictRequest, PredictResponse = cls("PredictRequest"), cls("PredictResponse")

    req = PredictRequest()
    req.model_spec.name = "half_plus_two"
    req.model_spec.version.value = 1
    fill_tensor(req.inputs["x"], [1.0, 2.0, 5.0])

    resp = PredictResponse()
    fill_tensor(resp.outputs["y"], [2.5, 3.0, 4.5])
    resp.model_spec.name = "half_plus_two"
    resp.model_spec.version.value = 1
    resp.model_spec.signature_name = "serving_default"

    out_dir = os.path.dirname(os.path.abspath(__file__))
    for name, msg in (("predict_request.grpc", req), ("predict_response.grpc", resp)):
        data = msg.SerializeToString(deterministic=True)
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(grpc_frame(data))
        print(f"{name}: {len(data)}-byte message, {len(data) + 5}-byte frame: {data.hex()}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
