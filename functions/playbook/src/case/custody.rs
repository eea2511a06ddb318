//! Chain of custody: custody entries, recorded failures, UTC times and SHA-256 digests.

use std::time::SystemTime;

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::PlaybookError;

/// One entry of the chain of custody: who did what to which evidence, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodyEntry {
    /// The playbook step.
    pub step: String,
    /// The identity that acted (role or user ARN).
    pub actor: String,
    /// What was done, in words.
    pub action: String,
    /// The AWS operations called, in order.
    pub calls: Vec<String>,
    /// UTC time, RFC 3339.
    pub at: String,
    /// What the step was given.
    pub inputs: Value,
    /// What the step produced.
    pub outputs: Value,
    /// SHA-256 of the evidence this entry is about (canonical JSON of the section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// SHA-256 of the previous entry's canonical JSON: the entries form a
    /// hash chain, so none can be changed, removed or reordered unseen.
    /// The first entry of a case has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// The hash that the next entry links to: SHA-256 of the entry's canonical JSON.
pub fn link_of(entry: &CustodyEntry) -> String {
    sha256_json(entry)
}

/// The head of the chain: the link of its last entry (the empty chain has none).
pub fn chain_head(entries: &[CustodyEntry]) -> Option<String> {
    entries.last().map(link_of)
}

/// Appends `entry` to the chain, linked to the entry before it, and never
/// earlier in time than it.
pub fn append(chain: &mut Vec<CustodyEntry>, mut entry: CustodyEntry) {
    if let Some(last) = chain.last() {
        if entry.at < last.at {
            entry.at = last.at.clone();
        }
    }
    entry.previous = chain_head(chain);
    chain.push(entry);
}

/// Checks a custody chain: every entry links to the one before it, and time
/// never runs backwards. Returns the head, or what is broken.
pub fn verify_chain(entries: &[CustodyEntry]) -> Result<String, String> {
    let mut previous: Option<String> = None;
    let mut previous_at = "";
    for (i, entry) in entries.iter().enumerate() {
        if entry.previous != previous {
            return Err(format!(
                "custody entry {i} ({}: {}) does not link to the entry before it",
                entry.step, entry.action
            ));
        }
        if entry.at.as_str() < previous_at {
            return Err(format!(
                "custody entry {i} ({}) is dated {}, before the entry before it ({previous_at})",
                entry.step, entry.at
            ));
        }
        previous = Some(link_of(entry));
        previous_at = &entry.at;
    }
    previous.ok_or_else(|| "the custody chain is empty".to_owned())
}

/// A failure recorded in the Case, so nothing is lost or half-done unseen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepError {
    /// The step that failed.
    pub step: String,
    /// The stable error name.
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// What did not happen because of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_done: Option<String>,
    /// UTC time, RFC 3339.
    pub at: String,
}

impl StepError {
    /// Records `err` as the failure of `step`, saying what was left undone.
    pub fn new(step: &str, err: &PlaybookError, not_done: impl Into<Option<String>>) -> Self {
        Self {
            step: step.to_owned(),
            error_type: err.error_type().to_owned(),
            message: err.to_string(),
            not_done: not_done.into(),
            at: now_utc(),
        }
    }
}

/// What a state machine `Catch` puts at its `ResultPath`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    /// The error name.
    #[serde(rename = "Error")]
    pub error: String,
    /// The error message or JSON cause.
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// The current UTC time, RFC 3339 (`2026-11-28T10:15:30Z`).
pub fn now_utc() -> String {
    rfc3339(DateTime::from(SystemTime::now()))
}

/// An SDK time as RFC 3339 UTC text.
pub fn rfc3339(time: DateTime) -> String {
    time.fmt(Format::DateTime)
        .unwrap_or_else(|_| format!("{}s since epoch", time.secs()))
}

/// RFC 3339 text as an SDK time, if it is one.
pub fn parse_rfc3339(text: &str) -> Option<DateTime> {
    DateTime::from_str(text, Format::DateTime).ok()
}

/// Whole seconds from RFC 3339 time `from` to `to` (negative if `to` is
/// earlier), when both parse.
pub fn seconds_between(from: &str, to: &str) -> Option<i64> {
    let (from, to) = (parse_rfc3339(from)?, parse_rfc3339(to)?);
    Some((to.as_secs_f64() - from.as_secs_f64()).round() as i64)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 of `bytes`, raw: for a signature, or S3's base64 checksum.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a value's canonical JSON: keys sorted, no whitespace. The same
/// section always hashes the same, so an investigator can recompute the digest.
pub fn sha256_json<T: Serialize>(value: &T) -> String {
    let canonical = serde_json::to_value(value)
        .map(canonical)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default();
    sha256_hex(&canonical)
}

/// The value with every object's keys in sorted order. serde_json keeps
/// insertion order when any crate in the build enables `preserve_order`, so
/// sorting cannot be left to the map type.
pub(crate) fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Builds a custody entry for `step`, done by `actor`, timed now.
pub fn entry(
    step: &str,
    actor: &str,
    action: impl Into<String>,
    calls: &[&str],
    inputs: Value,
    outputs: Value,
    sha256: Option<String>,
) -> CustodyEntry {
    CustodyEntry {
        step: step.to_owned(),
        actor: actor.to_owned(),
        action: action.into(),
        calls: calls.iter().map(|c| (*c).to_owned()).collect(),
        at: now_utc(),
        inputs,
        outputs,
        sha256,
        previous: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_digest_ignores_key_order() {
        let a = json!({"b": 1, "a": [1, 2]});
        let b: Value = serde_json::from_str(r#"{ "a": [1,2], "b": 1 }"#).unwrap();
        assert_eq!(sha256_json(&a), sha256_json(&b));
        assert_ne!(sha256_json(&a), sha256_json(&json!({"b": 2, "a": [1, 2]})));
    }

    #[test]
    fn sha256_matches_the_known_digest_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn chain(n: usize) -> Vec<CustodyEntry> {
        let mut entries = Vec::new();
        for i in 0..n {
            let e = entry(
                "step",
                "me",
                format!("action {i}"),
                &[],
                Value::Null,
                Value::Null,
                None,
            );
            append(&mut entries, e);
        }
        entries
    }

    #[test]
    fn a_chain_links_every_entry_to_the_one_before() {
        let entries = chain(3);
        assert_eq!(entries[0].previous, None);
        assert_eq!(entries[2].previous, Some(link_of(&entries[1])));
        assert_eq!(verify_chain(&entries), Ok(link_of(&entries[2])));
        assert_eq!(chain_head(&entries), Some(link_of(&entries[2])));
    }

    #[test]
    fn a_changed_removed_or_reordered_entry_breaks_the_chain() {
        let mut changed = chain(3);
        changed[1].action = "something else".into();
        assert!(verify_chain(&changed).unwrap_err().contains("entry 2"));
        let mut removed = chain(3);
        removed.remove(1);
        assert!(verify_chain(&removed).is_err());
        let mut reordered = chain(3);
        reordered.swap(1, 2);
        assert!(verify_chain(&reordered).is_err());
        let mut backwards = chain(2);
        backwards[1].at = "2000-01-01T00:00:00Z".into();
        assert!(
            verify_chain(&backwards).is_err(),
            "a rewritten time breaks the link too"
        );
        assert!(verify_chain(&[]).is_err());
    }

    #[test]
    fn an_entry_is_never_dated_before_the_one_it_follows() {
        let mut entries = chain(1);
        entries[0].at = "2999-01-01T00:00:00Z".into();
        let late = entries.clone();
        append(
            &mut entries,
            entry("s", "me", "a", &[], Value::Null, Value::Null, None),
        );
        assert_eq!(entries[1].at, late[0].at);
        assert!(verify_chain(&entries).is_ok());
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let now = now_utc();
        assert!(now.ends_with('Z') && now.contains('T'), "{now}");
    }
}
