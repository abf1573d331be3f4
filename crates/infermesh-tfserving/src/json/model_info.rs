//! REST model status and metadata bodies, as TF Serving writes them (proto3 JSON:
//! int64 as strings, enums by name, default values printed, protobuf's whitespace),
//! built from plain values. The golden reference is
//! `testdata/tfserving/saved_model_half_plus_two_2_versions_metadata.json`.

use std::collections::BTreeMap;

use super::proto_json::{J, print};
use crate::model_info::VersionStatus;
use crate::tensor::tf_dtype_enum_name;
use crate::{Code, Signature, TensorInfo};

/// `GET /v1/models/{m}[/versions/{v}]` body:
/// `{"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": {…}}]}`.
pub fn model_status_json(versions: &[VersionStatus]) -> String {
    let items = versions
        .iter()
        .map(|v| {
            let (code, message) = match &v.error {
                Some(e) => (e.code, e.message.clone()),
                None => (Code::Ok, String::new()),
            };
            J::obj([
                ("version", J::str(v.version.to_string())),
                ("state", J::str(v.state.as_str_name())),
                (
                    "status",
                    J::obj([
                        ("error_code", J::str(code.name())),
                        ("error_message", J::str(message)),
                    ]),
                ),
            ])
        })
        .collect();
    print(&J::obj([("model_version_status", J::Arr(items))]))
}

fn tensor_info(info: &TensorInfo) -> J {
    let shape = match &info.shape {
        None => J::obj([("dim", J::Arr(vec![])), ("unknown_rank", J::Bool(true))]),
        Some(dims) => J::obj([
            (
                "dim",
                J::Arr(
                    dims.iter()
                        .map(|d| J::obj([("size", J::str(d.to_string())), ("name", J::str(""))]))
                        .collect(),
                ),
            ),
            ("unknown_rank", J::Bool(false)),
        ]),
    };
    J::obj([
        ("dtype", J::str(tf_dtype_enum_name(info.dtype))),
        ("tensor_shape", shape),
        ("name", J::str(info.name.clone())),
    ])
}

fn tensor_infos(map: &BTreeMap<String, TensorInfo>) -> J {
    J::Obj(
        map.iter()
            .map(|(k, v)| (k.clone(), tensor_info(v)))
            .collect(),
    )
}

/// `GET /v1/models/{m}[/versions/{v}]/metadata` body for a resolved version.
pub fn model_metadata_json(
    name: &str,
    version: i64,
    signatures: &BTreeMap<String, Signature>,
) -> String {
    let defs = signatures
        .iter()
        .map(|(key, s)| {
            let def = J::obj([
                ("inputs", tensor_infos(&s.inputs)),
                ("outputs", tensor_infos(&s.outputs)),
                ("method_name", J::str(s.method_name.clone())),
                ("defaults", J::Obj(vec![])),
            ]);
            (key.clone(), def)
        })
        .collect();
    let root = J::obj([
        (
            "model_spec",
            J::obj([
                ("name", J::str(name)),
                ("signature_name", J::str("")),
                ("version", J::str(version.to_string())),
            ]),
        ),
        (
            "metadata",
            J::obj([("signature_def", J::obj([("signature_def", J::Obj(defs))]))]),
        ),
    ]);
    print(&root)
}

#[cfg(test)]
#[path = "model_info_tests.rs"]
mod tests;
