//! A tiny ordered JSON tree printed the way protobuf's `MessageToJsonString` prints
//! with `add_whitespace` (one-space indent, `"key": value`, `{}`/`[]` when empty,
//! trailing newline), which TF Serving uses for model status and metadata.

/// An ordered JSON value (proto3 JSON needs only these).
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Str(String),
    Bool(bool),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn obj<const N: usize>(members: [(&str, J); N]) -> J {
        J::Obj(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    pub fn str(s: impl Into<String>) -> J {
        J::Str(s.into())
    }
}

/// Prints the tree, protobuf style.
pub fn print(root: &J) -> String {
    let mut out = String::new();
    write(&mut out, root, 0);
    out.push('\n');
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', depth));
}

fn write(out: &mut String, v: &J, depth: usize) {
    match v {
        J::Str(s) => {
            // serde_json escapes as proto3 JSON requires.
            out.push_str(&serde_json::Value::String(s.clone()).to_string());
        }
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write(out, item, depth + 1);
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write(out, &J::Str(k.clone()), depth + 1);
                out.push_str(": ");
                write(out, item, depth + 1);
            }
            if !members.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_protobuf() {
        let v = J::obj([
            ("a", J::Arr(vec![J::obj([("x", J::str("1"))])])),
            ("e", J::Obj(vec![])),
            ("l", J::Arr(vec![])),
            ("b", J::Bool(false)),
        ]);
        assert_eq!(
            print(&v),
            "{\n \"a\": [\n  {\n   \"x\": \"1\"\n  }\n ],\n \"e\": {},\n \"l\": [],\n \"b\": false\n}\n"
        );
    }
}
