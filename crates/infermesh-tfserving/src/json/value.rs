//! The JSON document model the REST layer works on. Like RapidJSON's DOM (which TF
//! Serving uses) and unlike `serde_json::Value`, it keeps integers and doubles apart,
//! holds NaN and ±Infinity, keeps object members in order (duplicates included), and
//! stores strings as raw bytes (RapidJSON does not validate UTF-8).

/// A JSON number, classified as RapidJSON does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// An integer literal that fits in `i64`.
    Int(i64),
    /// An integer literal above `i64::MAX` that fits in `u64`.
    Uint(u64),
    /// Anything with a fraction or exponent, NaN/Infinity, or a too-large integer.
    Double(f64),
}

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(Vec<u8>),
    Array(Vec<Value>),
    Object(Vec<(Vec<u8>, Value)>),
}

impl Number {
    /// The value as a double (RapidJSON `GetDouble`).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Uint(u) => u as f64,
            Number::Double(d) => d,
        }
    }
}

impl Value {
    /// RapidJSON's type name, as TF Serving prints it in errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Bool(false) => "False",
            Value::Bool(true) => "True",
            Value::Object(_) => "Object",
            Value::Array(_) => "Array",
            Value::String(_) => "String",
            Value::Number(_) => "Number",
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// The first member with this key (RapidJSON `FindMember`).
    pub fn member(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members
                .iter()
                .find(|(k, _)| k.as_slice() == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// `{"b64": "<string>"}` and nothing else.
    pub fn is_b64_object(&self) -> bool {
        match self {
            Value::Object(members) => {
                members.len() == 1
                    && members[0].0 == b"b64"
                    && matches!(members[0].1, Value::String(_))
            }
            _ => false,
        }
    }

    fn int(&self) -> Option<i128> {
        match self {
            Value::Number(Number::Int(i)) => Some(i128::from(*i)),
            Value::Number(Number::Uint(u)) => Some(i128::from(*u)),
            _ => None,
        }
    }

    /// An integer in `i32` range (RapidJSON `IsInt`).
    pub fn as_i32(&self) -> Option<i32> {
        self.int().and_then(|i| i32::try_from(i).ok())
    }

    /// An integer in `i64` range (RapidJSON `IsInt64`).
    pub fn as_i64(&self) -> Option<i64> {
        self.int().and_then(|i| i64::try_from(i).ok())
    }

    /// An integer in `u32` range (RapidJSON `IsUint`).
    pub fn as_u32(&self) -> Option<u32> {
        self.int().and_then(|i| u32::try_from(i).ok())
    }

    /// An integer in `u64` range (RapidJSON `IsUint64`).
    pub fn as_u64(&self) -> Option<u64> {
        self.int().and_then(|i| u64::try_from(i).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ranges_follow_rapidjson() {
        let v = Value::Number(Number::Int(-1));
        assert_eq!(v.as_i32(), Some(-1));
        assert_eq!(v.as_u32(), None);
        let v = Value::Number(Number::Int(1 << 40));
        assert_eq!(v.as_i32(), None);
        assert_eq!(v.as_i64(), Some(1 << 40));
        assert_eq!(v.as_u64(), Some(1 << 40));
        let v = Value::Number(Number::Uint(u64::MAX));
        assert_eq!(v.as_i64(), None);
        assert_eq!(v.as_u64(), Some(u64::MAX));
        assert_eq!(Value::Number(Number::Double(2.0)).as_i32(), None);
    }

    #[test]
    fn b64_object_needs_exactly_one_string_key() {
        let ok = Value::Object(vec![(b"b64".to_vec(), Value::String(b"aGk=".to_vec()))]);
        assert!(ok.is_b64_object());
        let two = Value::Object(vec![
            (b"b64".to_vec(), Value::String(vec![])),
            (b"x".to_vec(), Value::Null),
        ]);
        assert!(!two.is_b64_object());
        let num = Value::Object(vec![(b"b64".to_vec(), Value::Number(Number::Int(1)))]);
        assert!(!num.is_b64_object());
    }
}
