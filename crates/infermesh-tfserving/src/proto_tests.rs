//! Tests that the compiled protos keep TF Serving's packages, services and field
//! numbers, and that a `--model_config_file` text proto parses.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};

use super::tensorflow::serving::{ModelServerConfig, model_server_config};

fn pool() -> DescriptorPool {
    DescriptorPool::decode(super::FILE_DESCRIPTOR_SET).unwrap()
}

fn field_number(pool: &DescriptorPool, message: &str, field: &str) -> u32 {
    pool.get_message_by_name(message)
        .unwrap_or_else(|| panic!("{message} missing"))
        .get_field_by_name(field)
        .unwrap_or_else(|| panic!("{message}.{field} missing"))
        .number()
}

#[test]
fn services_have_tf_serving_names() {
    let pool = pool();
    let ps = pool
        .get_service_by_name("tensorflow.serving.PredictionService")
        .unwrap();
    let methods: Vec<String> = ps.methods().map(|m| m.name().to_string()).collect();
    assert_eq!(
        methods,
        [
            "Classify",
            "Regress",
            "Predict",
            "MultiInference",
            "GetModelMetadata"
        ]
    );
    let ms = pool
        .get_service_by_name("tensorflow.serving.ModelService")
        .unwrap();
    let methods: Vec<String> = ms.methods().map(|m| m.name().to_string()).collect();
    assert_eq!(methods, ["GetModelStatus", "HandleReloadConfigRequest"]);
}

#[test]
fn field_numbers_match_tf_serving() {
    let pool = pool();
    let cases = [
        ("tensorflow.serving.ModelSpec", "name", 1),
        ("tensorflow.serving.ModelSpec", "version", 2),
        ("tensorflow.serving.ModelSpec", "signature_name", 3),
        ("tensorflow.serving.ModelSpec", "version_label", 4),
        ("tensorflow.serving.PredictRequest", "model_spec", 1),
        ("tensorflow.serving.PredictRequest", "inputs", 2),
        ("tensorflow.serving.PredictRequest", "output_filter", 3),
        ("tensorflow.serving.PredictResponse", "outputs", 1),
        ("tensorflow.serving.PredictResponse", "model_spec", 2),
        (
            "tensorflow.serving.GetModelMetadataRequest",
            "metadata_field",
            2,
        ),
        ("tensorflow.serving.GetModelMetadataResponse", "metadata", 2),
        ("tensorflow.serving.SignatureDefMap", "signature_def", 1),
        ("tensorflow.serving.ModelVersionStatus", "version", 1),
        ("tensorflow.serving.ModelVersionStatus", "state", 2),
        ("tensorflow.serving.ModelVersionStatus", "status", 3),
        ("tensorflow.serving.StatusProto", "error_code", 1),
        ("tensorflow.serving.StatusProto", "error_message", 2),
        ("tensorflow.serving.ModelConfig", "model_version_policy", 7),
        ("tensorflow.serving.ModelConfig", "version_labels", 8),
        ("tensorflow.TensorProto", "dtype", 1),
        ("tensorflow.TensorProto", "tensor_shape", 2),
        ("tensorflow.TensorProto", "tensor_content", 4),
        ("tensorflow.TensorProto", "float_val", 5),
        ("tensorflow.TensorProto", "int_val", 7),
        ("tensorflow.TensorProto", "string_val", 8),
        ("tensorflow.TensorProto", "int64_val", 10),
        ("tensorflow.TensorProto", "half_val", 13),
        ("tensorflow.TensorProto", "uint64_val", 17),
        ("tensorflow.TensorProto", "float8_val", 18),
        ("tensorflow.TensorShapeProto", "dim", 2),
        ("tensorflow.TensorShapeProto", "unknown_rank", 3),
        ("tensorflow.TensorInfo", "name", 1),
        ("tensorflow.TensorInfo", "dtype", 2),
        ("tensorflow.TensorInfo", "tensor_shape", 3),
        ("tensorflow.TensorInfo", "composite_tensor", 5),
        ("tensorflow.SignatureDef", "defaults", 4),
        ("tensorflow.Feature", "int64_list", 3),
        ("tensorflow.Example", "features", 1),
    ];
    for (message, field, number) in cases {
        assert_eq!(
            field_number(&pool, message, field),
            number,
            "{message}.{field}"
        );
    }
    let state = pool
        .get_enum_by_name("tensorflow.serving.ModelVersionStatus.State")
        .unwrap();
    assert_eq!(state.get_value_by_name("AVAILABLE").unwrap().number(), 30);
    let dtype = pool.get_enum_by_name("tensorflow.DataType").unwrap();
    assert_eq!(dtype.get_value_by_name("DT_UINT64").unwrap().number(), 23);
    assert_eq!(
        dtype.get_value_by_name("DT_FLOAT_REF").unwrap().number(),
        101
    );
    let code = pool.get_enum_by_name("tensorflow.error.Code").unwrap();
    assert_eq!(
        code.get_value_by_name("UNAUTHENTICATED").unwrap().number(),
        16
    );
}

#[test]
fn model_config_file_parses() {
    let text = r#"
        model_config_list {
          config {
            name: "half_plus_two"
            base_path: "/models/half_plus_two"
            model_platform: "tensorflow"
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: "stable" value: 1 }
            version_labels { key: "canary" value: 2 }
          }
          config { name: "other" base_path: "/m/o" model_version_policy { latest { num_versions: 2 } } }
        }
    "#;
    let desc = pool()
        .get_message_by_name("tensorflow.serving.ModelServerConfig")
        .unwrap();
    let dynamic = DynamicMessage::parse_text_format(desc, text).unwrap();
    let config = ModelServerConfig::decode(dynamic.encode_to_vec().as_slice()).unwrap();
    let Some(model_server_config::Config::ModelConfigList(list)) = config.config else {
        panic!("no model_config_list")
    };
    assert_eq!(list.config.len(), 2);
    let first = &list.config[0];
    assert_eq!(first.name, "half_plus_two");
    assert_eq!(first.model_platform, "tensorflow");
    assert_eq!(first.version_labels["canary"], 2);
    use super::tensorflow::serving::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
    let policy = first
        .model_version_policy
        .as_ref()
        .unwrap()
        .policy_choice
        .as_ref();
    assert!(matches!(policy, Some(PolicyChoice::Specific(s)) if s.versions == [1, 2]));
}
