//! REST classify and regress: decoding `{"signature_name"?, "context"?, "examples"}`
//! into `tf.Example`s, and encoding results as `{"results": …}` — classify
//! `[[[label, score], …], …]`, regress `[value, …]` — with TF Serving's messages and
//! layout (`util/json_tensor.cc`).

use std::collections::HashMap;

use super::predict_request::{decode_b64, format_error, parse_object, signature_name};
use super::value::{Number, Value};
use super::writer::{PrettyWriter, value_to_string};
use crate::proto::tensorflow::serving::{
    ClassificationResult, ExampleList, ExampleListWithContext, Input, RegressionResult, input,
};
use crate::proto::tensorflow::{
    BytesList, Example, Feature, Features, FloatList, Int64List, feature::Kind,
};
use crate::{DEFAULT_SIGNATURE, Status};

/// A decoded REST classify or regress request.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifyRegressJsonRequest {
    /// As sent; empty when absent (see [`ClassifyRegressJsonRequest::signature_key`]).
    pub signature_name: String,
    /// Features shared by every example.
    pub context: Option<Example>,
    pub examples: Vec<Example>,
}

impl ClassifyRegressJsonRequest {
    /// The signature to run: `serving_default` when none was named.
    pub fn signature_key(&self) -> &str {
        if self.signature_name.is_empty() {
            DEFAULT_SIGNATURE
        } else {
            &self.signature_name
        }
    }

    /// The examples, each merged with the context and serialized: the values of the
    /// `DT_STRING [N]` input tensor (see [`crate::inference::examples_tensor`]).
    pub fn serialized_examples(&self) -> Vec<Vec<u8>> {
        match crate::inference::input_examples(&self.to_input()) {
            Ok(examples) => examples.iter().map(prost::Message::encode_to_vec).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The request as the gRPC `Input` message (with context when one was sent).
    pub fn to_input(&self) -> Input {
        let kind = match &self.context {
            Some(context) => input::Kind::ExampleListWithContext(ExampleListWithContext {
                examples: self.examples.clone(),
                context: Some(context.clone()),
            }),
            None => input::Kind::ExampleList(ExampleList {
                examples: self.examples.clone(),
            }),
        };
        Input { kind: Some(kind) }
    }
}

/// Decodes a classify or regress body (both have the same shape).
pub fn parse_classify_regress_request(body: &[u8]) -> Result<ClassifyRegressJsonRequest, Status> {
    let doc = parse_object(body)?;
    let signature_name = signature_name(&doc)?;
    let context = doc.member("context").map(example_from_json).transpose()?;
    let Some(examples) = doc.member("examples") else {
        return Err(format_error(
            &doc,
            "When method is classify, key 'examples' is expected and was not found",
        ));
    };
    let Value::Array(items) = examples else {
        return Err(format_error(
            &doc,
            "Expecting 'examples' value to be an list/array",
        ));
    };
    if items.is_empty() {
        return Err(format_error(&doc, "'examples' value is an empty array"));
    }
    let examples = items
        .iter()
        .map(example_from_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClassifyRegressJsonRequest {
        signature_name,
        context,
        examples,
    })
}

fn example_from_json(v: &Value) -> Result<Example, Status> {
    let Value::Object(members) = v else {
        return Err(Status::invalid_argument(format!(
            "Example must be JSON object but got JSON {}",
            v.type_name()
        )));
    };
    let mut features = HashMap::new();
    for (key, content) in members {
        let name = String::from_utf8_lossy(key).into_owned();
        let mut feature = Feature::default();
        match content {
            Value::Array(items) => {
                for item in items {
                    add_to_feature(item, &name, &mut feature)?;
                }
            }
            _ => add_to_feature(content, &name, &mut feature)?,
        }
        features.insert(name, feature);
    }
    Ok(Example {
        features: Some(Features { feature: features }),
    })
}

fn kind_error(name: &str, feature: &Feature) -> Status {
    let kind = match feature.kind {
        Some(Kind::BytesList(_)) => "bytes",
        Some(Kind::FloatList(_)) => "float",
        Some(Kind::Int64List(_)) => "int64",
        None => "UNKNOWN",
    };
    Status::invalid_argument(format!(
        "Unexpected element type in feature: {name} expecting type: {kind}"
    ))
}

/// The value list of the feature's kind, setting the kind if unset; an error when the
/// feature already holds another kind.
macro_rules! list_of_kind {
    ($fn:ident, $variant:ident, $list:ident, $t:ty) => {
        fn $fn<'a>(name: &str, f: &'a mut Feature) -> Result<&'a mut Vec<$t>, Status> {
            if !matches!(f.kind, None | Some(Kind::$variant(_))) {
                return Err(kind_error(name, f));
            }
            match f
                .kind
                .get_or_insert_with(|| Kind::$variant($list::default()))
            {
                Kind::$variant(l) => Ok(&mut l.value),
                _ => Err(Status::internal("feature kind changed")),
            }
        }
    };
}

list_of_kind!(bytes_list, BytesList, BytesList, Vec<u8>);
list_of_kind!(float_list, FloatList, FloatList, f32);
list_of_kind!(int64_list, Int64List, Int64List, i64);

/// `AddValueToFeature`: the first value fixes the feature's kind.
fn add_to_feature(v: &Value, name: &str, f: &mut Feature) -> Result<(), Status> {
    let unexpected = || {
        Status::invalid_argument(format!(
            "Feature: {name} has element with unexpected JSON type: {}",
            v.type_name()
        ))
    };
    match v {
        Value::Null | Value::Array(_) => return Err(unexpected()),
        Value::Bool(b) => int64_list(name, f)?.push(i64::from(*b)),
        Value::Object(_) => {
            if !v.is_b64_object() {
                return Err(unexpected());
            }
            bytes_list(name, f)?;
            let decoded = decode_b64(v)?;
            bytes_list(name, f)?.push(decoded);
        }
        Value::String(s) => bytes_list(name, f)?.push(s.clone()),
        Value::Number(Number::Double(d)) => {
            float_list(name, f)?;
            if d.is_finite() && d.abs() > f64::from(f32::MAX) {
                return Err(Status::invalid_argument(format!(
                    "Cannot convert JSON value: {} to float without loss of precision.",
                    value_to_string(v)
                )));
            }
            float_list(name, f)?.push(*d as f32);
        }
        Value::Number(Number::Int(i)) => int64_list(name, f)?.push(*i),
        Value::Number(Number::Uint(_)) => {
            int64_list(name, f)?;
            return Err(Status::invalid_argument(format!(
                "Feature: {name} has uint64 element. Only int64 is supported."
            )));
        }
    }
    Ok(())
}

/// `{"results": [[[label, score], …], …]}`, laid out as TF Serving does.
pub fn encode_classification_result(result: &ClassificationResult) -> Result<String, Status> {
    if result.classifications.is_empty() {
        return Err(Status::invalid_argument(
            "Cannot convert empty ClassificationResults to JSON",
        ));
    }
    let mut w = PrettyWriter::new();
    w.start_object();
    w.key(b"results");
    w.start_array();
    for classifications in &result.classifications {
        w.set_single_line_arrays(true);
        w.start_array();
        for class in &classifications.classes {
            w.start_array();
            w.string(class.label.as_bytes());
            w.f32(class.score);
            w.end_array();
        }
        w.end_array();
        w.set_single_line_arrays(false);
    }
    w.end_array();
    w.end_object();
    Ok(w.finish())
}

/// `{"results": [value, …]}`, laid out as TF Serving does.
pub fn encode_regression_result(result: &RegressionResult) -> Result<String, Status> {
    if result.regressions.is_empty() {
        return Err(Status::invalid_argument(
            "Cannot convert empty RegressionResults to JSON",
        ));
    }
    let mut w = PrettyWriter::new();
    w.start_object();
    w.key(b"results");
    w.set_single_line_arrays(true);
    w.start_array();
    for r in &result.regressions {
        w.f32(r.value);
    }
    w.end_array();
    w.end_object();
    Ok(w.finish())
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
