"""REST as a Python user calls it with `requests` (the Rust integration tests cover the
REST API in depth; these check what the TF Serving docs' Python snippets do)."""

import requests

from interop_models import ONNX_MODEL


def test_rest_predict_half_plus_two(tf_server):
    r = requests.post(f"{tf_server.rest}/v1/models/half_plus_two:predict",
                      json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"predictions": [2.5, 3.0, 4.5]}


def test_rest_predict_half_plus_three(tf_server):
    r = requests.post(f"{tf_server.rest}/v1/models/half_plus_three:predict",
                      json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [3.5, 4.0, 5.5]}


def test_rest_predict_onnx_v1(onnx_server):
    r = requests.post(f"{onnx_server.rest}/v1/models/{ONNX_MODEL}/versions/1:predict",
                      json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [2.5, 3.0, 4.5]}


def test_rest_unknown_model(onnx_server):
    r = requests.post(f"{onnx_server.rest}/v1/models/nope:predict", json={"instances": [1.0]}, timeout=30)
    assert r.status_code == 404
    assert r.json() == {"error": "Servable not found for request: Latest(nope)"}
