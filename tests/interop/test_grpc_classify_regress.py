"""gRPC Classify and Regress on half_plus_two's tf.Example signatures (values from TF
Serving's own tests). A server without these RPCs must answer UNIMPLEMENTED; the test is
then reported as skipped with that reason."""

import grpc
import pytest

from interop_models import ONNX_MODEL
from tfs import classify, example, regress, rpc_error, skip_if_unimplemented


def _call(fn, *args):
    try:
        return fn(*args)
    except grpc.RpcError as err:
        skip_if_unimplemented(err, fn.__name__)
        raise


def test_regress(tf_server):
    resp = _call(regress, tf_server, "half_plus_two", "regress_x_to_y", [example(x=80.0), example(x=2.0)])
    got = [r.value for r in resp.result.regressions]
    assert got == pytest.approx([42.0, 3.0])
    assert resp.model_spec.name == "half_plus_two"
    assert resp.model_spec.version.value == 123


def test_regress_other_output(tf_server):
    resp = _call(regress, tf_server, "half_plus_two", "regress_x_to_y2", [example(x=80.0)])
    assert [r.value for r in resp.result.regressions] == pytest.approx([43.0])


def test_classify(tf_server):
    resp = _call(classify, tf_server, "half_plus_two", "classify_x_to_y", [example(x=20.0), example(x=2.0)])
    got = [[(c.label, c.score) for c in cl.classes] for cl in resp.result.classifications]
    assert len(got) == 2
    assert [len(g) for g in got] == [1, 1]
    assert [g[0][0] for g in got] == ["", ""]
    assert [g[0][1] for g in got] == pytest.approx([12.0, 3.0])


def test_classify_on_predict_signature_is_refused(tf_server):
    err = rpc_error(classify, tf_server, "half_plus_two", "serving_default", [example(x=1.0)])
    skip_if_unimplemented(err, "Classify")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()


def test_regress_on_onnx_model_is_refused(onnx_server):
    err = rpc_error(regress, onnx_server, ONNX_MODEL, "", [example(x=1.0)])
    skip_if_unimplemented(err, "Regress")
    assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION), err.details()
