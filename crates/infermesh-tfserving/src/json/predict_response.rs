//! Encoding predict outputs as TF Serving's REST API does: `{"predictions": …}` for
//! row requests (one entry per batch item; objects when there are several outputs),
//! `{"outputs": …}` for columnar ones (an object when there are several outputs).
//! `DT_STRING` outputs whose key ends in `_bytes` are written as `{"b64": …}`.
//! Layout and number formatting follow RapidJSON's `PrettyWriter` as TF Serving uses it.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::predict_request::RequestFormat;
use super::writer::PrettyWriter;
use crate::{Status, Tensor, TensorData};

/// Encodes predict outputs in the layout the request used.
pub fn encode_predict_response(
    outputs: &BTreeMap<String, Tensor>,
    format: RequestFormat,
) -> Result<String, Status> {
    encode(outputs, format).map(PrettyWriter::finish)
}

/// [`encode_predict_response`]'s text as bytes (for an HTTP body): without the UTF-8
/// check when no string output held bytes beyond ASCII.
pub fn encode_predict_response_bytes(
    outputs: &BTreeMap<String, Tensor>,
    format: RequestFormat,
) -> Result<Vec<u8>, Status> {
    encode(outputs, format).map(PrettyWriter::finish_bytes)
}

fn encode(
    outputs: &BTreeMap<String, Tensor>,
    format: RequestFormat,
) -> Result<PrettyWriter, Status> {
    if outputs.is_empty() {
        return Err(Status::invalid_argument(
            "Cannot convert empty tensor map to JSON",
        ));
    }
    match format {
        RequestFormat::Row => row(outputs),
        RequestFormat::Columnar => Ok(columnar(outputs)),
    }
}

fn row(outputs: &BTreeMap<String, Tensor>) -> Result<PrettyWriter, Status> {
    let mut batch = 0usize;
    for (name, t) in outputs {
        let Some(&size) = t.shape.first() else {
            return Err(Status::invalid_argument(format!(
                "Tensor name: {name} has no shape information "
            )));
        };
        if size < 1 {
            return Err(Status::invalid_argument(format!(
                "Tensor name: {name} has invalid batch size: {size}"
            )));
        }
        if batch != 0 && batch != size {
            return Err(Status::invalid_argument(format!(
                "Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}"
            )));
        }
        batch = size;
    }
    let objects = outputs.len() > 1;
    // Per output (in map order), the next element to write: on the stack for the
    // usual few outputs, allocated beyond.
    let mut few = [0usize; 4];
    let mut many = Vec::new();
    let offsets: &mut [usize] = if outputs.len() <= few.len() {
        &mut few[..outputs.len()]
    } else {
        many.resize(outputs.len(), 0);
        &mut many
    };
    let mut w = PrettyWriter::with_capacity(text_estimate(outputs));
    w.start_object();
    w.key(b"predictions");
    w.start_array();
    for _ in 0..batch {
        if objects {
            w.start_object();
        }
        w.set_single_line_arrays(true);
        for ((name, t), offset) in outputs.iter().zip(offsets.iter_mut()) {
            if objects {
                w.key(name.as_bytes());
            }
            values(&mut w, t, is_bytes(name, t), 1, offset);
        }
        w.set_single_line_arrays(false);
        if objects {
            w.end_object();
        }
    }
    w.end_array();
    w.end_object();
    Ok(w)
}

fn columnar(outputs: &BTreeMap<String, Tensor>) -> PrettyWriter {
    let objects = outputs.len() > 1;
    let mut w = PrettyWriter::with_capacity(text_estimate(outputs));
    w.start_object();
    w.key(b"outputs");
    if objects {
        w.start_object();
    }
    for (name, t) in outputs {
        if objects {
            w.key(name.as_bytes());
        }
        let mut offset = 0;
        values(&mut w, t, is_bytes(name, t), 0, &mut offset);
    }
    if objects {
        w.end_object();
    }
    w.end_object();
    w
}

/// Room for the usual body: keys and layout, and a dozen bytes per element (more is
/// grown as needed).
fn text_estimate(outputs: &BTreeMap<String, Tensor>) -> usize {
    let elements: usize = outputs
        .values()
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    64 + outputs.keys().map(|k| k.len() + 16).sum::<usize>() + elements.min(1 << 16) * 12
}

fn is_bytes(name: &str, t: &Tensor) -> bool {
    matches!(t.data, TensorData::Str(_)) && name.ends_with("_bytes")
}

/// Writes dimensions `dim..` of a tensor, starting at element `offset`.
fn values(w: &mut PrettyWriter, t: &Tensor, bytes: bool, dim: usize, offset: &mut usize) {
    if dim >= t.shape.len() {
        scalar(w, t, bytes, *offset);
        *offset += 1;
        return;
    }
    w.start_array();
    for _ in 0..t.shape[dim] {
        values(w, t, bytes, dim + 1, offset);
    }
    w.end_array();
}

fn scalar(w: &mut PrettyWriter, t: &Tensor, bytes: bool, i: usize) {
    // `Tensor::new` guarantees the shape covers the data; a hand-built tensor that
    // lies about its shape gets nulls rather than a panic.
    match &t.data {
        TensorData::F32(v) => v.get(i).map(|x| w.f32(*x)),
        TensorData::F64(v) => v.get(i).map(|x| w.f64(*x)),
        TensorData::I8(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::I16(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::I32(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::I64(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::U8(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::U16(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::U32(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::U64(v) => v.get(i).map(|x| w.raw(&x.to_string())),
        TensorData::Bool(v) => v.get(i).map(|x| w.bool(*x)),
        TensorData::Str(v) => v.get(i).map(|s| {
            if bytes {
                let encoded = base64::engine::general_purpose::STANDARD.encode(s);
                w.start_object();
                w.key(b"b64");
                w.string(encoded.as_bytes());
                w.end_object();
            } else {
                w.string(s);
            }
        }),
    }
    .unwrap_or_else(|| w.raw("null"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::predict_request::{PredictJsonRequest, parse_predict_request};
    use crate::{Signature, TensorInfo};

    fn t(shape: &[usize], data: TensorData) -> Tensor {
        Tensor::new(shape.to_vec(), data).unwrap()
    }

    fn one(name: &str, tensor: Tensor) -> BTreeMap<String, Tensor> {
        BTreeMap::from([(name.to_string(), tensor)])
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    /// half_plus_two: y = 0.5 * x + 2, elementwise.
    fn half_plus_two(body: &str) -> String {
        let sig = Signature {
            method_name: crate::servable::method::PREDICT.into(),
            inputs: BTreeMap::from([(
                "x".to_string(),
                TensorInfo {
                    name: "x:0".into(),
                    dtype: 1,
                    shape: Some(vec![-1, 1]),
                },
            )]),
            outputs: BTreeMap::new(),
        };
        let PredictJsonRequest { format, inputs, .. } =
            parse_predict_request(body.as_bytes(), |_| Ok(&sig)).unwrap();
        let x = &inputs["x"];
        let TensorData::F32(v) = &x.data else {
            panic!("not f32")
        };
        let y = t(
            &x.shape,
            TensorData::F32(v.iter().map(|x| 0.5 * x + 2.0).collect()),
        );
        encode_predict_response(&one("y", y), format).unwrap()
    }

    #[test]
    fn half_plus_two_handler_cases() {
        let out = half_plus_two(r#"{"instances": [[1.0, 2.0], [3.0, 4.0]]}"#);
        assert_eq!(
            out,
            "{\n    \"predictions\": [[2.5, 3.0], [3.5, 4.0]\n    ]\n}"
        );
        assert_eq!(
            json(&out),
            json(r#"{"predictions": [[2.5, 3.0], [3.5, 4.0]]}"#)
        );
        let out = half_plus_two(r#"{"inputs": [3.0, 4.0]}"#);
        assert_eq!(
            out,
            "{\n    \"outputs\": [\n        3.5,\n        4.0\n    ]\n}"
        );
        assert_eq!(json(&out), json(r#"{"outputs": [3.5, 4.0]}"#));
        let out = half_plus_two(r#"{"instances": [1.0, 2.0, 5.0]}"#);
        assert_eq!(out, "{\n    \"predictions\": [2.5, 3.0, 4.5\n    ]\n}");
    }

    #[test]
    fn float_outputs_use_tf_serving_format() {
        let out = encode_predict_response(
            &one(
                "y",
                t(&[3], TensorData::F32(vec![9_000_000.0, 999_999.0, 0.00003])),
            ),
            RequestFormat::Row,
        )
        .unwrap();
        assert_eq!(
            out,
            "{\n    \"predictions\": [9e+06, 999999.0, 3e-05\n    ]\n}"
        );
        let out = encode_predict_response(
            &one(
                "y",
                t(
                    &[3],
                    TensorData::F64(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
                ),
            ),
            RequestFormat::Row,
        )
        .unwrap();
        assert_eq!(
            out,
            "{\n    \"predictions\": [NaN, Infinity, -Infinity\n    ]\n}"
        );
    }

    #[test]
    fn several_outputs_become_objects() {
        let outputs = BTreeMap::from([
            ("a".to_string(), t(&[2], TensorData::I64(vec![1, 2]))),
            (
                "b_bytes".to_string(),
                t(&[2, 1], TensorData::Str(vec![b"hi".to_vec(), vec![0xff]])),
            ),
        ]);
        let row = encode_predict_response(&outputs, RequestFormat::Row).unwrap();
        assert_eq!(
            row,
            concat!(
                "{\n    \"predictions\": [\n        {\n            \"a\": 1,\n",
                "            \"b_bytes\": [{\n                    \"b64\": \"aGk=\"\n                }]\n",
                "        },\n        {\n            \"a\": 2,\n",
                "            \"b_bytes\": [{\n                    \"b64\": \"/w==\"\n                }]\n",
                "        }\n    ]\n}"
            )
        );
        let col = encode_predict_response(&outputs, RequestFormat::Columnar).unwrap();
        assert_eq!(
            json(&col),
            json(
                r#"{"outputs": {"a": [1, 2], "b_bytes": [[{"b64": "aGk="}], [{"b64": "/w=="}]]}}"#
            )
        );
    }

    /// One to seven outputs of batch 3 (offsets on the stack up to four, allocated
    /// beyond): every batch item holds each output's item, as the columnar layout of
    /// the same outputs does.
    #[test]
    fn row_offsets_for_few_and_many_outputs() {
        for n in 1..=7i64 {
            let outputs: BTreeMap<String, Tensor> = (0..n)
                .map(|k| {
                    let values = (0..6).map(|i| k * 100 + i).collect();
                    (format!("out{k}"), t(&[3, 2], TensorData::I64(values)))
                })
                .collect();
            let row = json(&encode_predict_response(&outputs, RequestFormat::Row).unwrap());
            let col = json(&encode_predict_response(&outputs, RequestFormat::Columnar).unwrap());
            for item in 0..3 {
                for k in 0..n {
                    let name = format!("out{k}");
                    let want = if n == 1 {
                        &col["outputs"][item]
                    } else {
                        &col["outputs"][&name][item]
                    };
                    let got = if n == 1 {
                        &row["predictions"][item]
                    } else {
                        &row["predictions"][item][&name]
                    };
                    assert_eq!(got, want, "{n} outputs, item {item}, {name}");
                    assert_eq!(got[1], serde_json::json!(k * 100 + item as i64 * 2 + 1));
                }
            }
        }
    }

    /// The bytes encoding is the text encoding's bytes, for outputs with numbers and
    /// strings (ASCII, other UTF-8, invalid UTF-8), `_bytes` keys, both layouts.
    #[test]
    fn bytes_encoding_matches_text() {
        let strings: [&[u8]; 4] = [b"ok", "caf\u{e9}".as_bytes(), b"\xff", b"q\"\n"];
        for case in 0..64usize {
            let s1 = strings[case % 4].to_vec();
            let s2 = strings[(case / 4) % 4].to_vec();
            let key = if case % 2 == 0 { "s" } else { "s_bytes" };
            let mut outputs =
                BTreeMap::from([(key.to_string(), t(&[2], TensorData::Str(vec![s1, s2])))]);
            if case / 16 % 2 == 1 {
                outputs.insert("f".into(), t(&[2], TensorData::F32(vec![0.5, 1e-7])));
            }
            for format in [RequestFormat::Row, RequestFormat::Columnar] {
                assert_eq!(
                    encode_predict_response_bytes(&outputs, format).unwrap(),
                    encode_predict_response(&outputs, format)
                        .unwrap()
                        .into_bytes(),
                    "case {case} {format:?}"
                );
            }
        }
        assert_eq!(
            encode_predict_response_bytes(&BTreeMap::new(), RequestFormat::Row),
            encode_predict_response(&BTreeMap::new(), RequestFormat::Row).map(String::into_bytes)
        );
    }

    #[test]
    fn strings_bools_and_scalars() {
        let out = encode_predict_response(
            &one(
                "s",
                t(&[2], TensorData::Str(vec![b"a\"b".to_vec(), b"c".to_vec()])),
            ),
            RequestFormat::Columnar,
        )
        .unwrap();
        assert_eq!(json(&out), json(r#"{"outputs": ["a\"b", "c"]}"#));
        let out = encode_predict_response(
            &one("b", t(&[], TensorData::Bool(vec![true]))),
            RequestFormat::Columnar,
        )
        .unwrap();
        assert_eq!(out, "{\n    \"outputs\": true\n}");
    }

    #[test]
    fn row_format_errors() {
        let err = |outputs: BTreeMap<String, Tensor>| {
            encode_predict_response(&outputs, RequestFormat::Row)
                .unwrap_err()
                .message
        };
        assert_eq!(
            err(BTreeMap::new()),
            "Cannot convert empty tensor map to JSON"
        );
        assert_eq!(
            err(one("y", t(&[], TensorData::F32(vec![1.0])))),
            "Tensor name: y has no shape information "
        );
        assert_eq!(
            err(one("y", t(&[0], TensorData::F32(vec![])))),
            "Tensor name: y has invalid batch size: 0"
        );
        let outputs = BTreeMap::from([
            ("a".to_string(), t(&[2], TensorData::F32(vec![1.0, 2.0]))),
            ("b".to_string(), t(&[1], TensorData::F32(vec![1.0]))),
        ]);
        assert_eq!(
            err(outputs),
            "Tensor name: b has inconsistent batch size: 1 expecting: 2"
        );
    }
}
