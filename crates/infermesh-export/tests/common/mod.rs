//! Shared by the Istio export tests: the repository root, and validation of exported
//! documents against Istio's CRD OpenAPI schemas (`shared/schemas/istio-crd-all.gen.yaml`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `INFERMESH_SHARED_DIR`, else `shared/` beside the repository (as the interop suite).
pub fn schemas_file() -> PathBuf {
    let shared = std::env::var_os("INFERMESH_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    shared.join("schemas/istio-crd-all.gen.yaml")
}

/// The `openAPIV3Schema` of `kind` at `group/version`, from the CRD file.
pub fn schema_for(crds: &[Value], api_version: &str, kind: &str) -> Option<Value> {
    let (group, version) = api_version.split_once('/')?;
    crds.iter()
        .filter(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)
        .flat_map(|c| {
            c["spec"]["versions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|v| v["name"] == version)
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
}

/// Rejects unknown fields, as the API server's strict field validation does (the CRD
/// schemas leave `additionalProperties` open and rely on pruning).
pub fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let open = map.contains_key("additionalProperties")
                || map.contains_key("x-kubernetes-preserve-unknown-fields");
            if map.contains_key("properties") && !open {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// Whether a document is of an Istio API group (`*.istio.io`): the kinds the CRD file
/// has. The export's other documents (the ext_authz server's Deployment, Service, …)
/// are core Kubernetes kinds, validated by `tests/interop/k8s/validate.sh`.
pub fn is_istio(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .and_then(|api| api.split_once('/'))
        .is_some_and(|(group, _)| group.ends_with(".istio.io"))
}

/// The Istio documents of an export (see [`is_istio`]).
pub fn istio_documents(docs: &[Value]) -> impl Iterator<Item = &Value> {
    docs.iter().filter(|d| is_istio(d))
}

/// Validation errors of one document against its kind's (strict) CRD schema.
pub fn errors(crds: &[Value], doc: &Value) -> Vec<String> {
    let api = doc["apiVersion"].as_str().unwrap();
    let kind = doc["kind"].as_str().unwrap();
    let mut schema =
        schema_for(crds, api, kind).unwrap_or_else(|| panic!("no CRD schema for {api} {kind}"));
    // The API server adds apiVersion, kind and metadata to the root: strict below it.
    strict(&mut schema["properties"]["spec"]);
    let validator = jsonschema::draft4::new(&schema).expect("schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The CRDs, or `None` (with the reason printed) when the shared folder is missing.
pub fn crds() -> Option<Vec<Value>> {
    let file = schemas_file();
    match std::fs::read_to_string(&file) {
        Ok(text) => Some(serde_saphyr::from_multiple(&text).expect("CRD YAML parses")),
        Err(_) => {
            eprintln!(
                "SKIPPED schema check: {} not found (set INFERMESH_SHARED_DIR to the shared/ folder)",
                file.display()
            );
            None
        }
    }
}
