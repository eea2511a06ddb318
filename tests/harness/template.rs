//! CloudFormation/SAM templates as JSON values, for the tests that read them.
//!
//! YAML short-form intrinsics become their long form (`!Ref X` ->
//! `{"Ref": "X"}`, `!GetAtt A.B` -> `{"Fn::GetAtt": "A.B"}`, `!Sub s` ->
//! `{"Fn::Sub": s}`, ...), as CloudFormation itself reads them.

use serde_json::{Map, Value};

use crate::repo_root;

/// Reads a template under the repository root.
pub fn load_template(path: &str) -> Value {
    let file = repo_root().join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    to_json(yaml)
}

fn to_json(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let key = if name == "Ref" || name == "Condition" {
                name.to_owned()
            } else {
                format!("Fn::{name}")
            };
            let mut object = Map::new();
            object.insert(key, to_json(tagged.value));
            Value::Object(object)
        }
    }
}

/// `value` with every `Ref` and `Fn::GetAtt` replaced by `intrinsic(kind,
/// argument)`, kind being `Ref` or `GetAtt`.
pub fn resolve(value: &Value, intrinsic: &dyn Fn(&str, &str) -> Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().expect("one entry");
            match (k.as_str(), v.as_str()) {
                ("Ref", Some(arg)) => intrinsic("Ref", arg),
                ("Fn::GetAtt", Some(arg)) => intrinsic("GetAtt", arg),
                _ => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), resolve(v, intrinsic)))
                        .collect(),
                ),
            }
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve(v, intrinsic)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, intrinsic)).collect()),
        other => other.clone(),
    }
}
