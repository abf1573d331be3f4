"""Names the interop tests serve the models under."""

# The two-version TF test model is served under this name: the golden metadata file was
# taken from a TF Serving that served it so.
TF_TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
# Our ONNX example model (examples/models/half_plus_two: v1 = 0.5x+2, v2 = 0.5x+3).
ONNX_MODEL = "half_plus_two"

# --max-body-bytes of the `limited_server` fixture.
SMALL_BODY_LIMIT = 64 * 1024
