//! Finding parsers: every trigger the responder accepts, into one [`Incident`].
//!
//! Real events vary (numbers where strings are expected, missing optional
//! blocks, several findings per event), so the parsers read `serde_json::Value`
//! leniently and fail only on what a case cannot do without, with a message
//! naming the field.

use std::collections::BTreeMap;

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde_json::{json, Value};

use crate::case::{FindingSource, Incident};
use crate::custody::{rfc3339, sha256_hex};
use crate::error::{PlaybookError, Result};

/// What the parser uses where the event itself does not say.
#[derive(Debug, Clone, Default)]
pub struct ParseContext {
    /// Region for a manual request that names none (the responder's region).
    pub default_region: Option<String>,
    /// Account for a manual request that names none (the responder's account).
    pub default_account: Option<String>,
}

/// One finding of an event, ready to become a case.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFinding {
    /// Stable case id (also the Step Functions execution name).
    pub case_id: String,
    /// The normalised finding.
    pub incident: Incident,
    /// The event narrowed to this one finding: the input of the case's execution.
    pub event: Value,
}

/// The findings of one event, and the ones in it that cannot become a case.
#[derive(Debug, Clone, Default)]
pub struct ParsedEvent {
    /// Findings about EC2 instances.
    pub findings: Vec<ParsedFinding>,
    /// Findings in the same event that are not about an EC2 instance, with why.
    pub skipped: Vec<PlaybookError>,
}

const GUARDDUTY: &str = "GuardDuty Finding";
const SECURITY_HUB_IMPORTED: &str = "Security Hub Findings - Imported";
const SECURITY_HUB_CUSTOM_ACTION: &str = "Security Hub Findings - Custom Action";
const CLOUDWATCH_ALARM: &str = "CloudWatch Alarm State Change";
const EC2_STATE_CHANGE: &str = "EC2 Instance State-change Notification";

/// Parses any supported trigger: an EventBridge event or a manual request.
/// Fails when no finding in the event is about an EC2 instance.
pub fn parse_event(event: &Value, ctx: &ParseContext) -> Result<ParsedEvent> {
    let Some(object) = event.as_object() else {
        return Err(PlaybookError::InvalidFinding(
            "the event is not a JSON object".into(),
        ));
    };
    let parsed = match object.get("detail-type").and_then(Value::as_str) {
        Some(GUARDDUTY) => single(event, parse_guardduty(event)?),
        Some(SECURITY_HUB_IMPORTED | SECURITY_HUB_CUSTOM_ACTION) => parse_security_hub(event)?,
        Some(CLOUDWATCH_ALARM) => single(event, parse_cloudwatch_alarm(event)?),
        Some(EC2_STATE_CHANGE) => single(event, parse_ec2_state_change(event)?),
        Some(other) => {
            return Err(PlaybookError::UnsupportedEvent(format!(
                "detail-type {other:?} is not a trigger this responder handles"
            )))
        }
        None if object.contains_key("instanceId") || object.contains_key("instanceIds") => {
            single(event, parse_manual(event, ctx)?)
        }
        None => return Err(PlaybookError::InvalidFinding(
            "neither an EventBridge event (no detail-type) nor a manual request (no instanceId)"
                .into(),
        )),
    };
    if parsed.findings.is_empty() {
        let why = parsed
            .skipped
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "the event carries no finding".into());
        return Err(PlaybookError::NoInstanceInFinding(why));
    }
    Ok(parsed)
}

/// Parses an event that must hold exactly one finding: the input of one execution.
pub fn parse_one(event: &Value, ctx: &ParseContext) -> Result<ParsedFinding> {
    let mut parsed = parse_event(event, ctx)?;
    match parsed.findings.len() {
        1 => Ok(parsed.findings.remove(0)),
        n => Err(PlaybookError::InvalidFinding(format!(
            "the event carries {n} findings; one execution handles one finding \
             (dispatch starts one execution per finding)"
        ))),
    }
}

/// The stable case id of a finding: the same finding, delivered any number of
/// times, from any account that aggregates it, yields the same id.
pub fn case_id(source: FindingSource, finding_id: &str) -> String {
    let digest = sha256_hex(format!("{source:?}\n{finding_id}").as_bytes());
    format!("{}-{}", source.case_prefix(), &digest[..24])
}

fn single(event: &Value, incident: Incident) -> ParsedEvent {
    ParsedEvent {
        findings: vec![ParsedFinding {
            case_id: case_id(incident.source, &incident.finding_id),
            incident,
            event: event.clone(),
        }],
        skipped: Vec::new(),
    }
}

fn parse_guardduty(event: &Value) -> Result<Incident> {
    let detail = required(event, "/detail", "GuardDuty event")?;
    let finding_id = text(detail, "/id")
        .or_else(|| text(detail, "/arn"))
        .ok_or_else(|| missing("GuardDuty finding", "detail.id"))?;
    let resource_type = text(detail, "/resource/resourceType").unwrap_or_default();
    let instance = detail.pointer("/resource/instanceDetails");
    let instance_id = instance.and_then(|i| text(i, "/instanceId"));
    let Some(instance_id) = instance_id.filter(|_| resource_type == "Instance") else {
        return Err(PlaybookError::NoInstanceInFinding(format!(
            "GuardDuty finding {finding_id} is about a resource of type {:?}",
            if resource_type.is_empty() {
                "unknown"
            } else {
                &resource_type
            }
        )));
    };
    let instance = instance.unwrap_or(&Value::Null);
    Ok(Incident {
        source: FindingSource::GuardDuty,
        finding_type: text(detail, "/type")
            .ok_or_else(|| missing("GuardDuty finding", "detail.type"))?,
        title: text(detail, "/title").unwrap_or_default(),
        severity: number(detail, "/severity")
            .ok_or_else(|| missing("GuardDuty finding", "detail.severity"))?
            .clamp(0.0, 10.0),
        account: text(detail, "/accountId").or_else(|| text(event, "/account")),
        region: text(detail, "/region")
            .or_else(|| text(event, "/region"))
            .ok_or_else(|| missing("GuardDuty finding", "detail.region"))?,
        instance_ids: vec![instance_id],
        resource_role: text(detail, "/service/resourceRole").map(|r| r.to_ascii_uppercase()),
        sample: flag(detail, "/service/additionalInfo/sample"),
        tags: key_value_tags(instance.get("tags")),
        instance_state: text(instance, "/instanceState"),
        instance_launch_time: timestamp(instance, "/launchTime"),
        observed_at: timestamp(detail, "/service/eventLastSeen")
            .or_else(|| timestamp(detail, "/updatedAt")),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &finding_id),
        finding_id,
    })
}

fn parse_security_hub(event: &Value) -> Result<ParsedEvent> {
    let findings = required(event, "/detail/findings", "Security Hub event")?
        .as_array()
        .ok_or_else(|| {
            PlaybookError::InvalidFinding("Security Hub detail.findings is not a list".into())
        })?;
    let mut parsed = ParsedEvent::default();
    for finding in findings {
        match parse_asff(event, finding) {
            Ok(incident) => {
                let mut narrowed = event.clone();
                narrowed["detail"]["findings"] = json!([finding]);
                parsed.findings.push(ParsedFinding {
                    case_id: case_id(incident.source, &incident.finding_id),
                    incident,
                    event: narrowed,
                });
            }
            Err(err @ PlaybookError::NoInstanceInFinding(_)) => parsed.skipped.push(err),
            Err(err) => return Err(err),
        }
    }
    Ok(parsed)
}

fn parse_asff(event: &Value, finding: &Value) -> Result<Incident> {
    let finding_id = text(finding, "/Id").ok_or_else(|| missing("Security Hub finding", "Id"))?;
    let resources = finding
        .get("Resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let instances: Vec<&Value> = resources
        .iter()
        .filter(|r| text(r, "/Type").as_deref() == Some("AwsEc2Instance"))
        .collect();
    let instance_ids: Vec<String> = instances
        .iter()
        .filter_map(|r| text(r, "/Id"))
        .map(|id| instance_id_from_arn(&id))
        .collect();
    if instance_ids.is_empty() {
        let types: Vec<String> = resources.iter().filter_map(|r| text(r, "/Type")).collect();
        return Err(PlaybookError::NoInstanceInFinding(format!(
            "Security Hub finding {finding_id} is about {}",
            if types.is_empty() {
                "no resource".to_owned()
            } else {
                types.join(", ")
            }
        )));
    }
    let mut tags = BTreeMap::new();
    for instance in &instances {
        if let Some(map) = instance.get("Tags").and_then(Value::as_object) {
            for (k, v) in map {
                tags.insert(k.clone(), scalar_text(v));
            }
        }
    }
    let product_fields = finding.get("ProductFields").unwrap_or(&Value::Null);
    let region = text(finding, "/Region")
        .or_else(|| instances.iter().find_map(|r| text(r, "/Region")))
        .or_else(|| text(event, "/region"))
        .ok_or_else(|| missing("Security Hub finding", "Region"))?;
    Ok(Incident {
        source: FindingSource::SecurityHub,
        finding_type: asff_finding_type(finding),
        title: text(finding, "/Title").unwrap_or_default(),
        severity: asff_severity(finding),
        account: text(finding, "/AwsAccountId").or_else(|| text(event, "/account")),
        region,
        instance_ids,
        resource_role: product_fields
            .get("aws/guardduty/service/resourceRole")
            .map(scalar_text)
            .map(|r| r.to_ascii_uppercase()),
        sample: flag(finding, "/Sample"),
        tags,
        instance_state: None,
        instance_launch_time: instances
            .iter()
            .find_map(|r| timestamp(r, "/Details/AwsEc2Instance/LaunchedAt")),
        observed_at: timestamp(finding, "/LastObservedAt")
            .or_else(|| timestamp(finding, "/UpdatedAt")),
        requested_by: text(event, "/detail/actionName")
            .map(|a| format!("Security Hub custom action {a}")),
        reason: text(event, "/detail/actionDescription"),
        raw_reference: reference(event, &finding_id),
        finding_id,
    })
}

/// The finding type: for GuardDuty findings imported into Security Hub, the
/// GuardDuty type (`Backdoor:EC2/C&CActivity.B!DNS`), so that one policy rule
/// matches a finding whichever way it arrives; otherwise the first ASFF type.
fn asff_finding_type(finding: &Value) -> String {
    let first_type = text(finding, "/Types/0")
        .or_else(|| text(finding, "/FindingProviderFields/Types/0"))
        .or_else(|| text(finding, "/GeneratorId"))
        .unwrap_or_else(|| "Unknown".into());
    let from_guardduty =
        text(finding, "/ProductArn").is_some_and(|p| p.ends_with("/aws/guardduty"));
    match first_type.rsplit('/').next() {
        Some(last) if from_guardduty && last.contains(':') => {
            // ASFF writes `Backdoor:EC2/X` as `Backdoor:EC2-X` (a slash separates taxonomy levels).
            match last.split_once(':') {
                Some((threat, rest)) => match rest.split_once('-') {
                    Some((resource, name)) => format!("{threat}:{resource}/{name}"),
                    None => last.to_owned(),
                },
                None => last.to_owned(),
            }
        }
        _ => first_type,
    }
}

/// ASFF severity on the 0-10 scale: `Normalized` (0-100) when present, else the label.
fn asff_severity(finding: &Value) -> f64 {
    if let Some(normalized) = number(finding, "/Severity/Normalized") {
        return (normalized / 10.0).clamp(0.0, 10.0);
    }
    let label = text(finding, "/Severity/Label")
        .or_else(|| text(finding, "/FindingProviderFields/Severity/Label"))
        .unwrap_or_default();
    match label.to_ascii_uppercase().as_str() {
        "CRITICAL" => 9.0,
        "HIGH" => 7.0,
        "MEDIUM" => 4.0,
        "LOW" => 1.0,
        _ => 0.0,
    }
}

/// Severity given to alarms: the alarm's author judged the metric abnormal, so
/// medium; the policy's per-source minimum decides whether that is enough.
pub const ALARM_SEVERITY: f64 = 5.0;
/// Severity given to state changes: informative unless the policy raises it.
pub const STATE_CHANGE_SEVERITY: f64 = 3.0;
/// Severity given to manual requests: a person asked.
pub const MANUAL_SEVERITY: f64 = 10.0;

fn parse_cloudwatch_alarm(event: &Value) -> Result<Incident> {
    let detail = required(event, "/detail", "CloudWatch alarm event")?;
    let alarm_name = text(detail, "/alarmName")
        .ok_or_else(|| missing("CloudWatch alarm", "detail.alarmName"))?;
    let alarm_arn = text(event, "/resources/0").unwrap_or_else(|| alarm_name.clone());
    let state = text(detail, "/state/value").unwrap_or_default();
    let metrics = detail
        .pointer("/configuration/metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut instance_ids: Vec<String> = metrics
        .iter()
        .filter_map(|m| text(m, "/metricStat/metric/dimensions/InstanceId"))
        .collect();
    instance_ids.dedup();
    if instance_ids.is_empty() {
        return Err(PlaybookError::NoInstanceInFinding(format!(
            "alarm {alarm_name} has no InstanceId metric dimension"
        )));
    }
    let changed_at = text(detail, "/state/timestamp")
        .or_else(|| text(event, "/time"))
        .unwrap_or_default();
    let severity = if state == "ALARM" {
        ALARM_SEVERITY
    } else {
        0.0
    };
    Ok(Incident {
        source: FindingSource::CloudWatchAlarm,
        finding_id: format!("{alarm_arn}@{changed_at}"),
        finding_type: format!("CloudWatchAlarm:{state}/{alarm_name}"),
        title: text(detail, "/state/reason")
            .unwrap_or_else(|| format!("alarm {alarm_name} is {state}")),
        severity,
        account: text(event, "/account"),
        region: text(event, "/region")
            .ok_or_else(|| missing("CloudWatch alarm event", "region"))?,
        instance_ids,
        resource_role: None,
        sample: false,
        tags: BTreeMap::new(),
        instance_state: None,
        instance_launch_time: None,
        observed_at: timestamp(detail, "/state/timestamp"),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &alarm_arn),
    })
}

fn parse_ec2_state_change(event: &Value) -> Result<Incident> {
    let instance_id = text(event, "/detail/instance-id")
        .ok_or_else(|| missing("EC2 state-change event", "detail.instance-id"))?;
    let state = text(event, "/detail/state")
        .ok_or_else(|| missing("EC2 state-change event", "detail.state"))?;
    let time = text(event, "/time").unwrap_or_default();
    Ok(Incident {
        source: FindingSource::Ec2StateChange,
        finding_id: format!("{instance_id}:{state}@{time}"),
        finding_type: format!("EC2StateChange:{state}"),
        title: format!("instance {instance_id} is {state}"),
        severity: STATE_CHANGE_SEVERITY,
        account: text(event, "/account"),
        region: text(event, "/region")
            .ok_or_else(|| missing("EC2 state-change event", "region"))?,
        instance_ids: vec![instance_id.clone()],
        resource_role: None,
        sample: false,
        tags: BTreeMap::new(),
        instance_state: Some(state),
        instance_launch_time: None,
        observed_at: timestamp(event, "/time"),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &instance_id),
    })
}

fn parse_manual(event: &Value, ctx: &ParseContext) -> Result<Incident> {
    let mut instance_ids: Vec<String> = match event.get("instanceIds") {
        Some(Value::Array(ids)) => ids.iter().map(scalar_text).collect(),
        Some(_) => {
            return Err(PlaybookError::InvalidFinding(
                "instanceIds is not a list".into(),
            ))
        }
        None => Vec::new(),
    };
    if let Some(id) = text(event, "/instanceId") {
        instance_ids.insert(0, id);
    }
    instance_ids.retain(|id| !id.is_empty());
    instance_ids.dedup();
    if instance_ids.is_empty() {
        return Err(missing("manual request", "instanceId"));
    }
    if let Some(bad) = instance_ids.iter().find(|id| !looks_like_instance_id(id)) {
        return Err(PlaybookError::InvalidFinding(format!(
            "{bad:?} is not an EC2 instance id (i- followed by 8 or 17 hex digits)"
        )));
    }
    let reason = text(event, "/reason");
    let requested_by = text(event, "/requestedBy");
    let region = text(event, "/region")
        .or_else(|| ctx.default_region.clone())
        .ok_or_else(|| {
            PlaybookError::InvalidFinding(
                "the manual request names no region and none is configured".into(),
            )
        })?;
    let finding_id = format!(
        "manual:{}:{}",
        instance_ids.join(","),
        reason.as_deref().unwrap_or_default()
    );
    Ok(Incident {
        source: FindingSource::Manual,
        finding_type: "Manual".into(),
        title: format!("manual request for {}", instance_ids.join(", ")),
        severity: number(event, "/severity")
            .unwrap_or(MANUAL_SEVERITY)
            .clamp(0.0, 10.0),
        account: text(event, "/account").or_else(|| ctx.default_account.clone()),
        region,
        instance_ids,
        resource_role: None,
        sample: false,
        tags: BTreeMap::new(),
        instance_state: None,
        instance_launch_time: None,
        observed_at: None,
        requested_by,
        reason,
        raw_reference: finding_id.clone(),
        finding_id,
    })
}

/// Whether `id` has the shape of an EC2 instance id.
pub fn looks_like_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn instance_id_from_arn(id: &str) -> String {
    id.rsplit_once("instance/")
        .map(|(_, tail)| tail.to_owned())
        .unwrap_or_else(|| id.to_owned())
}

fn reference(event: &Value, finding: &str) -> String {
    match text(event, "/id") {
        Some(event_id) => format!("event {event_id}; finding {finding}"),
        None => format!("finding {finding}"),
    }
}

fn required<'a>(event: &'a Value, pointer: &str, what: &str) -> Result<&'a Value> {
    event
        .pointer(pointer)
        .filter(|v| !v.is_null())
        .ok_or_else(|| missing(what, &pointer[1..].replace('/', ".")))
}

fn missing(what: &str, field: &str) -> PlaybookError {
    PlaybookError::InvalidFinding(format!("{what} has no {field}"))
}

/// A text field, accepting numbers and booleans where text is expected.
fn text(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::Null => None,
        v => Some(scalar_text(v)).filter(|s| !s.is_empty()),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A number field, accepting numeric text.
fn number(value: &Value, pointer: &str) -> Option<f64> {
    match value.pointer(pointer)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean field, accepting "true"/"false" text.
fn flag(value: &Value, pointer: &str) -> bool {
    match value.pointer(pointer) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A time field as RFC 3339 UTC: ISO text, or epoch milliseconds as a number or text.
fn timestamp(value: &Value, pointer: &str) -> Option<String> {
    let millis = match value.pointer(pointer)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match DateTime::from_str(s, Format::DateTime) {
            Ok(time) => return Some(rfc3339(time)),
            Err(_) => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    }?;
    let secs = if millis > 1e11 {
        millis / 1000.0
    } else {
        millis
    };
    Some(rfc3339(DateTime::from_secs_f64(secs)))
}

/// GuardDuty tags: a list of `{key, value}`, sometimes `{Key, Value}`.
fn key_value_tags(tags: Option<&Value>) -> BTreeMap<String, String> {
    tags.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|tag| {
                    let key = text(tag, "/key").or_else(|| text(tag, "/Key"))?;
                    let value = text(tag, "/value")
                        .or_else(|| text(tag, "/Value"))
                        .unwrap_or_default();
                    Some((key, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guardduty(detail: Value) -> Value {
        json!({
            "version": "0", "id": "evt-1", "detail-type": "GuardDuty Finding",
            "source": "aws.guardduty", "account": "123456789012", "region": "us-east-1",
            "time": "2026-11-28T10:00:00Z", "resources": [], "detail": detail
        })
    }

    fn gd_detail() -> Value {
        json!({
            "id": "abc123", "type": "Backdoor:EC2/C&CActivity.B!DNS", "severity": 8,
            "accountId": "123456789012", "region": "us-east-1", "title": "C&C",
            "resource": {"resourceType": "Instance", "instanceDetails": {
                "instanceId": "i-0123456789abcdef0", "launchTime": 1700000000000_u64,
                "tags": [{"key": "Name", "value": "web"}], "instanceState": "running"}},
            "service": {"resourceRole": "TARGET", "additionalInfo": {"sample": "true"}}
        })
    }

    #[test]
    fn guardduty_numbers_and_text_are_both_accepted() {
        let mut detail = gd_detail();
        detail["severity"] = json!("7.5");
        let incident = parse_one(&guardduty(detail), &ParseContext::default())
            .unwrap()
            .incident;
        assert_eq!(incident.severity, 7.5);
        assert_eq!(
            incident.instance_launch_time.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert!(incident.sample, "sample given as the text \"true\"");
        assert_eq!(incident.tags.get("Name").map(String::as_str), Some("web"));
    }

    #[test]
    fn guardduty_launch_time_as_iso_text_is_normalised() {
        let mut detail = gd_detail();
        detail["resource"]["instanceDetails"]["launchTime"] = json!("2026-01-02T03:04:05.000Z");
        let incident = parse_one(&guardduty(detail), &ParseContext::default())
            .unwrap()
            .incident;
        assert_eq!(
            incident.instance_launch_time.as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
    }

    #[test]
    fn guardduty_access_key_finding_has_no_instance() {
        let mut detail = gd_detail();
        detail["resource"] = json!({"resourceType": "AccessKey", "accessKeyDetails": {}});
        let err = parse_event(&guardduty(detail), &ParseContext::default()).unwrap_err();
        assert_eq!(err.error_type(), "NoInstanceInFinding");
        assert!(err.to_string().contains("AccessKey"), "{err}");
    }

    #[test]
    fn guardduty_without_type_names_the_missing_field() {
        let mut detail = gd_detail();
        detail.as_object_mut().unwrap().remove("type");
        let err = parse_event(&guardduty(detail), &ParseContext::default()).unwrap_err();
        assert_eq!(err.error_type(), "InvalidFinding");
        assert!(err.to_string().contains("detail.type"), "{err}");
    }

    #[test]
    fn same_finding_twice_is_the_same_case() {
        let first = parse_one(&guardduty(gd_detail()), &ParseContext::default()).unwrap();
        let mut again = guardduty(gd_detail());
        again["id"] = json!("evt-2");
        let second = parse_one(&again, &ParseContext::default()).unwrap();
        assert_eq!(first.case_id, second.case_id);
        assert!(first.case_id.starts_with("gd-") && first.case_id.len() <= 80);
    }

    #[test]
    fn asff_guardduty_type_is_restored() {
        let finding = json!({
            "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "Types": ["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS"]
        });
        assert_eq!(
            asff_finding_type(&finding),
            "Backdoor:EC2/C&CActivity.B!DNS"
        );
        let other = json!({"ProductArn": "arn:aws:securityhub:us-east-1::product/x/y",
                            "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"]});
        assert_eq!(
            asff_finding_type(&other),
            "Software and Configuration Checks/Vulnerabilities/CVE"
        );
    }

    #[test]
    fn asff_severity_prefers_normalized_and_falls_back_to_label() {
        assert_eq!(
            asff_severity(&json!({"Severity": {"Normalized": 70, "Label": "HIGH"}})),
            7.0
        );
        assert_eq!(
            asff_severity(&json!({"Severity": {"Label": "CRITICAL"}})),
            9.0
        );
        assert_eq!(asff_severity(&json!({})), 0.0);
    }

    #[test]
    fn not_an_object_or_unknown_shape_is_invalid() {
        let ctx = ParseContext::default();
        assert_eq!(
            parse_event(&json!([1]), &ctx).unwrap_err().error_type(),
            "InvalidFinding"
        );
        assert_eq!(
            parse_event(&json!({"foo": 1}), &ctx)
                .unwrap_err()
                .error_type(),
            "InvalidFinding"
        );
        let other = json!({"detail-type": "AWS API Call via CloudTrail", "detail": {}});
        assert_eq!(
            parse_event(&other, &ctx).unwrap_err().error_type(),
            "UnsupportedEvent"
        );
    }

    #[test]
    fn manual_request_validates_ids_and_uses_the_context_region() {
        let ctx = ParseContext {
            default_region: Some("eu-west-1".into()),
            default_account: None,
        };
        let incident = parse_one(
            &json!({"instanceId": "i-0123456789abcdef0", "reason": "r"}),
            &ctx,
        )
        .unwrap()
        .incident;
        assert_eq!(incident.region, "eu-west-1");
        assert_eq!(incident.account, None);
        let err = parse_event(&json!({"instanceId": "i-$(reboot)"}), &ctx).unwrap_err();
        assert_eq!(err.error_type(), "InvalidFinding");
        let err = parse_event(
            &json!({"instanceId": "i-0123456789abcdef0"}),
            &ParseContext::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no region"), "{err}");
    }

    #[test]
    fn instance_ids_are_recognised() {
        assert!(looks_like_instance_id("i-0123456789abcdef0"));
        assert!(looks_like_instance_id("i-1234abcd"));
        assert!(!looks_like_instance_id("i-xyz"));
        assert!(!looks_like_instance_id("vol-0123456789abcdef0"));
    }
}
