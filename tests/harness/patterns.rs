//! EventBridge patterns with `$or`, as patterns a matcher without `$or`
//! (quamina) can hold: the union of the expansions matches exactly what the
//! pattern matches.
//!
//! The EventBridge user guide ("Content filtering", "$or matching"): `$or`
//! holds a list of patterns, any of which may match together with the rest
//! of the object it sits in. So an object with `$or: [A, B]` and other fields
//! R is the union of `R + A` and `R + B`, each alternative expanded in turn.

use serde_json::{Map, Value};

/// Every `$or`-free pattern of `pattern`; their union is `pattern`.
pub fn expand_or(pattern: &Value) -> Vec<Value> {
    let Value::Object(fields) = pattern else {
        return vec![pattern.clone()];
    };
    let mut partial: Vec<Map<String, Value>> = vec![Map::new()];
    for (key, value) in fields {
        let choices: Vec<Map<String, Value>> = if key == "$or" {
            value
                .as_array()
                .expect("$or holds a list of patterns")
                .iter()
                .flat_map(expand_or)
                .map(|alternative| match alternative {
                    Value::Object(map) => map,
                    other => panic!("an $or alternative is an object, not {other}"),
                })
                .collect()
        } else if value.is_object() {
            expand_or(value)
                .into_iter()
                .map(|v| Map::from_iter([(key.clone(), v)]))
                .collect()
        } else {
            vec![Map::from_iter([(key.clone(), value.clone())])]
        };
        partial = partial
            .iter()
            .flat_map(|base| choices.iter().map(move |choice| merge(base, choice)))
            .collect();
    }
    partial.into_iter().map(Value::Object).collect()
}

/// Both patterns at once: every field of each; nested objects merged.
fn merge(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = a.clone();
    for (key, value) in b {
        match (merged.get(key), value) {
            (Some(Value::Object(left)), Value::Object(right)) => {
                let both = merge(left, right);
                merged.insert(key.clone(), Value::Object(both));
            }
            (Some(existing), _) => panic!(
                "field {key} is both {existing} and {value}: a pattern this expansion does not take"
            ),
            (None, _) => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    merged
}
