//! Finding parsers: every trigger the responder accepts, into one [`Incident`].
//!
//! Real events vary (numbers where strings are expected, missing optional
//! blocks, several findings per event), so the parsers read `serde_json::Value`
//! leniently and fail only on what a case cannot do without, with a message
//! naming the field.

pub mod classify;
pub mod guardduty_types;

use std::collections::BTreeMap;

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde_json::{json, Value};

use crate::case::custody::{rfc3339, sha256_hex};
use crate::case::{FindingSource, Incident, OutsideActivity};
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
const CLOUDTRAIL_API_CALL: &str = "AWS API Call via CloudTrail";
/// The `detail-type` of the event `check-ami` starts a case with.
pub const UNAPPROVED_IMAGE_LAUNCH: &str = "EC2 Forensics Unapproved Image Launch";
/// The `source` of those events.
pub const CHECK_AMI_SOURCE: &str = "ec2-forensics.check-ami";
/// The finding type of a launch from an unapproved image.
pub const UNAPPROVED_IMAGE_TYPE: &str = "UnapprovedImage/RunInstances";
/// Severity of a launch from an unapproved image: a policy breach, not a
/// sign of compromise; the policy's `approvedImages.onUnapproved` decides.
const UNAPPROVED_IMAGE_SEVERITY: f64 = 5.0;

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
        Some(UNAPPROVED_IMAGE_LAUNCH) => single(event, parse_unapproved_launch(event)?),
        Some(other) => {
            return Err(PlaybookError::UnsupportedEvent(format!(
                "detail-type {other:?} is not a trigger this responder handles"
            )))
        }
        None if object.contains_key("instanceId") || object.contains_key("instanceIds") => {
            single(event, parse_manual(event, ctx)?)
        }
        None => parse_bare(event)?,
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

/// The shapes people hold findings in outside EventBridge: a bare GuardDuty
/// finding (the console's JSON view, the S3 export: camelCase), a bare ASFF
/// finding, and the `GetFindings` output of either service
/// (`{"Findings": [...]}`; GuardDuty's in PascalCase).
fn parse_bare(value: &Value) -> Result<ParsedEvent> {
    if let Some(findings) = value.get("Findings").and_then(Value::as_array) {
        let mut parsed = ParsedEvent::default();
        for finding in findings {
            match parse_bare(finding) {
                Ok(one) => {
                    parsed.findings.extend(one.findings);
                    parsed.skipped.extend(one.skipped);
                }
                Err(err @ PlaybookError::NoInstanceInFinding(_)) => parsed.skipped.push(err),
                Err(err) => return Err(err),
            }
        }
        return Ok(parsed);
    }
    if value.get("ProductArn").is_some() && value.get("Resources").is_some() {
        let incident = parse_asff(value, value)?;
        return Ok(single(value, incident));
    }
    if value.get("Arn").is_some() && value.get("Resource").is_some() && value.get("Type").is_some()
    {
        let finding = camel_case_keys(value);
        return Ok(single(
            &finding,
            parse_guardduty_finding(&finding, &finding)?,
        ));
    }
    if value.get("arn").is_some() && value.get("resource").is_some() && value.get("type").is_some()
    {
        return Ok(single(value, parse_guardduty_finding(value, value)?));
    }
    Err(PlaybookError::InvalidFinding(
        "not a finding this responder knows: neither an EventBridge event (detail-type), a GuardDuty or Security Hub finding, GetFindings output ({\"Findings\": [...]}), nor a manual request (instanceId)"
            .into(),
    ))
}

/// GuardDuty's API output with every key's first letter lowered: the shape
/// of its EventBridge events and exports.
fn camel_case_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut key = k.clone();
                    if let Some(first) = key.get(..1) {
                        let lower = first.to_ascii_lowercase();
                        key.replace_range(..1, &lower);
                    }
                    (key, camel_case_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camel_case_keys).collect()),
        other => other.clone(),
    }
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
/// times, from any account that aggregates it, directly or through Security
/// Hub, yields the same id. `detected_by` is the service that found it.
pub fn case_id(detected_by: FindingSource, finding_id: &str) -> String {
    let digest = sha256_hex(format!("{detected_by:?}\n{finding_id}").as_bytes());
    format!("{}-{}", detected_by.case_prefix(), &digest[..24])
}

fn single(event: &Value, incident: Incident) -> ParsedEvent {
    ParsedEvent {
        findings: vec![ParsedFinding {
            case_id: case_id(incident.detected_by, &incident.finding_id),
            incident,
            event: event.clone(),
        }],
        skipped: Vec::new(),
    }
}

fn parse_guardduty(event: &Value) -> Result<Incident> {
    let detail = required(event, "/detail", "GuardDuty event")?;
    parse_guardduty_finding(event, detail)
}

/// A GuardDuty finding (`detail` of its event, or the bare finding). Its id is
/// the finding ARN, which Security Hub uses as the ASFF `Id` of the same finding.
fn parse_guardduty_finding(event: &Value, detail: &Value) -> Result<Incident> {
    let finding_id = text(detail, "/arn")
        .or_else(|| text(detail, "/id"))
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
        live_tags: BTreeMap::new(),
        detected_by: FindingSource::GuardDuty,
        record_state: flag(detail, "/service/archived").then(|| "ARCHIVED".to_owned()),
        workflow_status: None,
        domain: text(detail, "/service/action/dnsRequestAction/domain"),
        instance_state: text(instance, "/instanceState"),
        instance_launch_time: timestamp(instance, "/launchTime"),
        observed_at: timestamp(detail, "/service/eventLastSeen")
            .or_else(|| timestamp(detail, "/updatedAt")),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &finding_id),
        finding_id,
        product_arn: None,
        asff_types: Vec::new(),
        compliance: None,
        chosen_by_person: false,
        outside_activity: guardduty_outside_activity(detail),
    })
}

/// The ports of the instance that outsiders probed or connected to, and
/// their addresses: port probes, and inbound connections (brute force).
fn guardduty_outside_activity(detail: &Value) -> OutsideActivity {
    let mut activity = OutsideActivity::default();
    let mut add = |local: Option<&Value>, remote: Option<&Value>| {
        if let Some(port) = local
            .and_then(|l| number(l, "/port"))
            .filter(|p| (0.0..=65535.0).contains(p))
        {
            let port = port as u16;
            if !activity.local_ports.contains(&port) {
                activity.local_ports.push(port);
            }
        }
        if let Some(address) =
            remote.and_then(|r| text(r, "/ipAddressV4").or_else(|| text(r, "/ipAddressV6")))
        {
            if !activity.remote_addresses.contains(&address) {
                activity.remote_addresses.push(address);
            }
        }
    };
    let action = detail.pointer("/service/action").unwrap_or(&Value::Null);
    for probe in action
        .pointer("/portProbeAction/portProbeDetails")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        add(probe.get("localPortDetails"), probe.get("remoteIpDetails"));
    }
    if let Some(connection) = action.get("networkConnectionAction") {
        if text(connection, "/connectionDirection").as_deref() == Some("INBOUND") {
            add(
                connection.get("localPortDetails"),
                connection.get("remoteIpDetails"),
            );
        }
    }
    activity
}

/// For an ASFF finding, the inbound connection its `Network` block describes.
fn asff_outside_activity(finding: &Value) -> OutsideActivity {
    let network = finding.get("Network").unwrap_or(&Value::Null);
    if text(network, "/Direction").as_deref() != Some("IN") {
        return OutsideActivity::default();
    }
    OutsideActivity {
        local_ports: number(network, "/DestinationPort")
            .filter(|p| (0.0..=65535.0).contains(p))
            .map(|p| p as u16)
            .into_iter()
            .collect(),
        remote_addresses: text(network, "/SourceIpV4")
            .or_else(|| text(network, "/SourceIpV6"))
            .into_iter()
            .collect(),
    }
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
                    case_id: case_id(incident.detected_by, &incident.finding_id),
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
    let instance_ids = unique(
        instances
            .iter()
            .filter_map(|r| text(r, "/Id"))
            .map(|id| instance_id_from_arn(&id))
            .collect(),
    );
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
    let from_guardduty = is_from_guardduty(finding);
    Ok(Incident {
        source: FindingSource::SecurityHub,
        finding_type: asff_finding_type(finding),
        title: text(finding, "/Title").unwrap_or_default(),
        severity: asff_severity(finding),
        live_tags: BTreeMap::new(),
        detected_by: if from_guardduty {
            FindingSource::GuardDuty
        } else {
            FindingSource::SecurityHub
        },
        record_state: text(finding, "/RecordState").map(|s| s.to_ascii_uppercase()),
        workflow_status: text(finding, "/Workflow/Status")
            .or_else(|| text(finding, "/WorkflowState"))
            .map(|s| s.to_ascii_uppercase()),
        domain: product_fields
            .get("aws/guardduty/service/action/dnsRequestAction/domain")
            .map(scalar_text)
            .or_else(|| text(finding, "/Network/DestinationDomain"))
            .filter(|d| !d.is_empty()),
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
        product_arn: text(finding, "/ProductArn"),
        asff_types: asff_types(finding),
        compliance: finding
            .get("Compliance")
            .filter(|c| !c.is_null())
            .map(|c| text(c, "/Status").unwrap_or_else(|| "present".into())),
        chosen_by_person: text(event, "/detail-type").as_deref()
            == Some(SECURITY_HUB_CUSTOM_ACTION),
        outside_activity: asff_outside_activity(finding),
    })
}

/// Every ASFF type the finding carries (`Types`, else the provider's own).
fn asff_types(finding: &Value) -> Vec<String> {
    ["/Types", "/FindingProviderFields/Types"]
        .iter()
        .filter_map(|p| finding.pointer(p).and_then(Value::as_array))
        .find(|types| !types.is_empty())
        .map(|types| types.iter().map(scalar_text).collect())
        .unwrap_or_default()
}

/// The finding type: for GuardDuty findings imported into Security Hub, the
/// GuardDuty type (`Backdoor:EC2/C&CActivity.B!DNS`), so that one policy rule
/// matches a finding whichever way it arrives; otherwise the first ASFF type.
fn asff_finding_type(finding: &Value) -> String {
    let first_type = text(finding, "/Types/0")
        .or_else(|| text(finding, "/FindingProviderFields/Types/0"))
        .or_else(|| text(finding, "/GeneratorId"))
        .unwrap_or_else(|| "Unknown".into());
    let from_guardduty = is_from_guardduty(finding);
    match first_type.rsplit('/').next() {
        Some(last) if from_guardduty && last.contains(':') => {
            // ASFF writes `Backdoor:EC2/X` as `Backdoor:EC2-X`, and some types as
            // `UnauthorizedAccess:EC2.X` (a slash separates taxonomy levels).
            // GuardDuty's resource names (EC2, Runtime, IAMUser...) hold neither.
            match last.split_once(':') {
                Some((threat, rest)) => match rest.split_once(['-', '.']) {
                    Some((resource, name)) => format!("{threat}:{resource}/{name}"),
                    None => last.to_owned(),
                },
                None => last.to_owned(),
            }
        }
        _ => first_type,
    }
}

/// Whether an ASFF finding is a GuardDuty finding imported into Security Hub.
/// Only the product ARN says so: an AWS service's (`::product/aws/...`) cannot
/// be claimed by another integration, while `ProductName` can be set by a
/// custom one.
pub fn is_from_guardduty(finding: &Value) -> bool {
    text(finding, "/ProductArn").is_some_and(|p| p.ends_with(GUARDDUTY_PRODUCT_SUFFIX))
}

/// How every GuardDuty product ARN ends, whatever its partition and region.
pub const GUARDDUTY_PRODUCT_SUFFIX: &str = "::product/aws/guardduty";

/// ASFF severity on the 0-10 scale. For a GuardDuty finding, GuardDuty's own
/// score (`FindingProviderFields.Severity.Original`, already 0-10); otherwise,
/// or when that is not a number in range, the label. Never the deprecated
/// `Normalized`, which rescales GuardDuty's 8 to 60.
fn asff_severity(finding: &Value) -> f64 {
    if is_from_guardduty(finding) {
        let original = number(finding, "/FindingProviderFields/Severity/Original")
            .or_else(|| number(finding, "/Severity/Original"))
            .filter(|s| (0.0..=10.0).contains(s));
        if let Some(original) = original {
            return original;
        }
    }
    let label = text(finding, "/FindingProviderFields/Severity/Label")
        .or_else(|| text(finding, "/Severity/Label"))
        .unwrap_or_default();
    match label.to_ascii_uppercase().as_str() {
        "CRITICAL" => 9.0,
        "HIGH" => 7.0,
        "MEDIUM" => 4.0,
        "LOW" => 1.0,
        _ => 0.0,
    }
}

/// The ids in their first order, each once.
fn unique(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    ids.into_iter()
        .filter(|id| !id.is_empty() && seen.insert(id.clone()))
        .collect()
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
    let instance_ids = unique(
        metrics
            .iter()
            .filter_map(|m| text(m, "/metricStat/metric/dimensions/InstanceId"))
            .collect(),
    );
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
        live_tags: BTreeMap::new(),
        detected_by: FindingSource::CloudWatchAlarm,
        record_state: None,
        workflow_status: None,
        domain: None,
        instance_state: None,
        instance_launch_time: None,
        observed_at: timestamp(detail, "/state/timestamp"),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &alarm_arn),
        product_arn: None,
        asff_types: Vec::new(),
        compliance: None,
        chosen_by_person: false,
        outside_activity: OutsideActivity::default(),
    })
}

/// One `RunInstances` call as CloudTrail reports it through EventBridge
/// (`AWS API Call via CloudTrail`).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// CloudTrail's `eventID`.
    pub event_id: String,
    /// When the call was made.
    pub event_time: Option<String>,
    /// The account the instances were launched in.
    pub account: String,
    /// The Region.
    pub region: String,
    /// Who called, as CloudTrail authenticated them (`userIdentity.arn`).
    pub launched_by: Option<String>,
    /// Each launched instance and its image.
    pub instances: Vec<(String, String)>,
    /// The call's `errorCode`: it launched nothing.
    pub error: Option<String>,
}

/// Reads a `RunInstances` call from its CloudTrail event. Any other event,
/// or one whose account or Region disagrees with CloudTrail's, is refused.
pub fn parse_launch(event: &Value) -> Result<Launch> {
    let detail_type = text(event, "/detail-type").unwrap_or_default();
    let source = text(event, "/detail/eventSource").unwrap_or_default();
    let name = text(event, "/detail/eventName").unwrap_or_default();
    if detail_type != CLOUDTRAIL_API_CALL || source != "ec2.amazonaws.com" || name != "RunInstances"
    {
        return Err(PlaybookError::UnsupportedEvent(format!(
            "check-ami reads CloudTrail's RunInstances calls, not {detail_type:?} {source:?} {name:?}"
        )));
    }
    let event_id = text(event, "/detail/eventID")
        .ok_or_else(|| missing("CloudTrail event", "detail.eventID"))?;
    let account = match (
        text(event, "/account"),
        text(event, "/detail/recipientAccountId"),
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(PlaybookError::InvalidFinding(format!(
                "the event's account {a} is not CloudTrail's recipient account {b}"
            )))
        }
        (_, Some(account)) | (Some(account), None) => account,
        (None, None) => return Err(missing("CloudTrail event", "detail.recipientAccountId")),
    };
    let region = match (text(event, "/region"), text(event, "/detail/awsRegion")) {
        (Some(a), Some(b)) if a != b => {
            return Err(PlaybookError::InvalidFinding(format!(
                "the event's Region {a} is not CloudTrail's {b}"
            )))
        }
        (_, Some(region)) | (Some(region), None) => region,
        (None, None) => return Err(missing("CloudTrail event", "detail.awsRegion")),
    };
    let error = text(event, "/detail/errorCode");
    let instances = event
        .pointer("/detail/responseElements/instancesSet/items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| Some((text(item, "/instanceId")?, text(item, "/imageId")?)))
        .collect::<Vec<_>>();
    if error.is_none() && instances.is_empty() {
        return Err(PlaybookError::NoInstanceInFinding(format!(
            "RunInstances call {event_id} names no launched instance with its image"
        )));
    }
    Ok(Launch {
        event_id,
        event_time: timestamp(event, "/detail/eventTime"),
        account,
        region,
        launched_by: text(event, "/detail/userIdentity/arn"),
        instances,
        error,
    })
}

/// The event `check-ami` starts a case with: the instances of one launch
/// whose image the policy does not approve, and why.
pub fn unapproved_launch_event(launch: &Launch, unapproved: &[(String, String, String)]) -> Value {
    json!({
        "version": "0",
        "id": launch.event_id,
        "source": CHECK_AMI_SOURCE,
        "detail-type": UNAPPROVED_IMAGE_LAUNCH,
        "account": launch.account,
        "region": launch.region,
        "time": launch.event_time,
        "detail": {
            "eventId": launch.event_id,
            "eventTime": launch.event_time,
            "launchedBy": launch.launched_by,
            "instances": unapproved.iter().map(|(instance, image, why)| json!({
                "instanceId": instance, "imageId": image, "why": why,
            })).collect::<Vec<_>>(),
        }
    })
}

/// The finding id of a launch: CloudTrail's event id.
pub fn launch_finding_id(event_id: &str) -> String {
    format!("cloudtrail:RunInstances:{event_id}")
}

fn parse_unapproved_launch(event: &Value) -> Result<Incident> {
    let event_id = text(event, "/detail/eventId")
        .ok_or_else(|| missing("unapproved launch event", "detail.eventId"))?;
    let items = event
        .pointer("/detail/instances")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let instance_ids = unique(
        items
            .iter()
            .filter_map(|i| text(i, "/instanceId"))
            .collect(),
    );
    if instance_ids.is_empty() {
        return Err(PlaybookError::NoInstanceInFinding(format!(
            "unapproved launch {event_id} names no instance"
        )));
    }
    let images: Vec<String> = unique(items.iter().filter_map(|i| text(i, "/imageId")).collect());
    let why: Vec<String> = unique(items.iter().filter_map(|i| text(i, "/why")).collect());
    let by = text(event, "/detail/launchedBy").unwrap_or_else(|| "an unrecorded caller".into());
    let finding_id = launch_finding_id(&event_id);
    Ok(Incident {
        source: FindingSource::ApprovedImagePolicy,
        finding_id: finding_id.clone(),
        finding_type: UNAPPROVED_IMAGE_TYPE.into(),
        title: format!(
            "{} launched by {by} from unapproved image {}: {}",
            instance_ids.join(", "),
            images.join(", "),
            why.join("; ")
        ),
        severity: UNAPPROVED_IMAGE_SEVERITY,
        account: text(event, "/account"),
        region: text(event, "/region")
            .ok_or_else(|| missing("unapproved launch event", "region"))?,
        instance_ids,
        resource_role: None,
        sample: false,
        // Whoever launched the instance chose its tags: none exempt.
        tags: BTreeMap::new(),
        live_tags: BTreeMap::new(),
        detected_by: FindingSource::ApprovedImagePolicy,
        record_state: None,
        workflow_status: None,
        domain: None,
        instance_state: None,
        instance_launch_time: text(event, "/detail/eventTime"),
        observed_at: text(event, "/detail/eventTime"),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &finding_id),
        product_arn: None,
        asff_types: Vec::new(),
        compliance: None,
        chosen_by_person: false,
        outside_activity: OutsideActivity::default(),
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
        live_tags: BTreeMap::new(),
        detected_by: FindingSource::Ec2StateChange,
        record_state: None,
        workflow_status: None,
        domain: None,
        instance_state: Some(state),
        instance_launch_time: None,
        observed_at: timestamp(event, "/time"),
        requested_by: None,
        reason: None,
        raw_reference: reference(event, &instance_id),
        product_arn: None,
        asff_types: Vec::new(),
        compliance: None,
        chosen_by_person: false,
        outside_activity: OutsideActivity::default(),
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
    let instance_ids = unique(instance_ids);
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
        live_tags: BTreeMap::new(),
        detected_by: FindingSource::Manual,
        record_state: None,
        workflow_status: None,
        domain: None,
        instance_state: None,
        instance_launch_time: None,
        observed_at: None,
        requested_by,
        reason,
        raw_reference: finding_id.clone(),
        finding_id,
        product_arn: None,
        asff_types: Vec::new(),
        compliance: None,
        chosen_by_person: true,
        outside_activity: OutsideActivity::default(),
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

/// A number field, accepting numeric text; only finite numbers count
/// ("NaN" and "inf" parse as floats, but are no severity).
fn number(value: &Value, pointer: &str) -> Option<f64> {
    match value.pointer(pointer)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
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
    fn asff_severity_is_guardduty_own_score_else_the_label_never_normalized() {
        let guardduty = json!({
            "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "FindingProviderFields": {"Severity": {"Original": "8", "Label": "HIGH"}},
            "Severity": {"Normalized": 60, "Label": "HIGH", "Original": "8"}
        });
        assert_eq!(asff_severity(&guardduty), 8.0);
        let other_product = json!({
            "ProductArn": "arn:aws:securityhub:us-east-1::product/x/y",
            "Severity": {"Normalized": 95, "Label": "MEDIUM", "Original": "9.8"}
        });
        assert_eq!(asff_severity(&other_product), 4.0);
        assert_eq!(
            asff_severity(&json!({"Severity": {"Label": "CRITICAL"}})),
            9.0
        );
        assert_eq!(asff_severity(&json!({"Severity": {"Normalized": 70}})), 0.0);
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
        assert!(parse_event(&json!({"Findings": []}), &ctx).is_err());
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

    const GD_ARN: &str = "arn:aws:guardduty:us-east-1:123456789012:detector/d1/finding/abc123";

    fn asff_of_guardduty() -> Value {
        json!({
            "SchemaVersion": "2018-10-08",
            "Id": GD_ARN,
            "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "GeneratorId": "arn:aws:guardduty:us-east-1:123456789012:detector/d1",
            "AwsAccountId": "123456789012",
            "Region": "us-east-1",
            "Types": ["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS"],
            "Title": "C&C",
            "Severity": {"Label": "HIGH", "Normalized": 60, "Original": "8"},
            "FindingProviderFields": {"Severity": {"Label": "HIGH", "Original": "8"}},
            "RecordState": "ACTIVE",
            "Workflow": {"Status": "NEW"},
            "Resources": [{"Type": "AwsEc2Instance",
                "Id": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}]
        })
    }

    fn bare_guardduty() -> Value {
        let mut finding = gd_detail();
        finding["arn"] = json!(GD_ARN);
        finding["schemaVersion"] = json!("2.0");
        finding["service"]["additionalInfo"] = json!({});
        finding
    }

    #[test]
    fn a_bare_guardduty_finding_is_accepted_as_the_console_and_export_give_it() {
        let parsed = parse_one(&bare_guardduty(), &ParseContext::default()).unwrap();
        assert_eq!(parsed.incident.source, FindingSource::GuardDuty);
        assert_eq!(parsed.incident.instance_ids, ["i-0123456789abcdef0"]);
        assert_eq!(parsed.incident.severity, 8.0);
    }

    #[test]
    fn guardduty_get_findings_output_in_pascal_case_is_accepted() {
        let output = json!({"Findings": [{
            "AccountId": "123456789012", "Arn": GD_ARN, "Id": "abc123", "Region": "us-east-1",
            "SchemaVersion": "2.0", "Severity": 8, "Title": "C&C",
            "Type": "Backdoor:EC2/C&CActivity.B!DNS",
            "Resource": {"ResourceType": "Instance", "InstanceDetails": {
                "InstanceId": "i-0123456789abcdef0", "InstanceState": "running",
                "Tags": [{"Key": "Name", "Value": "web"}]}},
            "Service": {"ResourceRole": "TARGET", "Archived": false}
        }]});
        let parsed = parse_one(&output, &ParseContext::default()).unwrap();
        assert_eq!(
            parsed.incident.finding_type,
            "Backdoor:EC2/C&CActivity.B!DNS"
        );
        assert_eq!(
            parsed.incident.tags.get("Name").map(String::as_str),
            Some("web")
        );
        assert_eq!(parsed.incident.resource_role.as_deref(), Some("TARGET"));
        assert_eq!(
            parsed.case_id,
            parse_one(&bare_guardduty(), &ParseContext::default())
                .unwrap()
                .case_id
        );
    }

    #[test]
    fn a_bare_asff_finding_and_security_hub_get_findings_output_are_accepted() {
        let bare = parse_one(&asff_of_guardduty(), &ParseContext::default()).unwrap();
        assert_eq!(bare.incident.source, FindingSource::SecurityHub);
        let listed = parse_one(
            &json!({"Findings": [asff_of_guardduty()]}),
            &ParseContext::default(),
        )
        .unwrap();
        assert_eq!(bare.case_id, listed.case_id);
    }

    #[test]
    fn one_guardduty_finding_is_one_case_directly_or_through_security_hub() {
        let mut detail = gd_detail();
        detail["arn"] = json!(GD_ARN);
        let direct = parse_one(&guardduty(detail), &ParseContext::default()).unwrap();
        let event = json!({
            "version": "0", "id": "evt-9", "detail-type": "Security Hub Findings - Imported",
            "source": "aws.securityhub", "account": "123456789012", "region": "us-east-1",
            "detail": {"findings": [asff_of_guardduty()]}
        });
        let via_hub = parse_one(&event, &ParseContext::default()).unwrap();
        assert_eq!(direct.case_id, via_hub.case_id);
        assert_eq!(
            via_hub.incident.severity, 8.0,
            "GuardDuty's own score, not Normalized/10"
        );
        assert_eq!(via_hub.incident.detected_by, FindingSource::GuardDuty);
    }

    #[test]
    fn archived_and_closed_states_are_carried_for_the_policy() {
        let mut finding = asff_of_guardduty();
        finding["RecordState"] = json!("ARCHIVED");
        finding["Workflow"]["Status"] = json!("suppressed");
        let incident = parse_one(&finding, &ParseContext::default())
            .unwrap()
            .incident;
        assert_eq!(incident.record_state.as_deref(), Some("ARCHIVED"));
        assert_eq!(incident.workflow_status.as_deref(), Some("SUPPRESSED"));
        let mut detail = gd_detail();
        detail["service"]["archived"] = json!(true);
        let incident = parse_one(&guardduty(detail), &ParseContext::default())
            .unwrap()
            .incident;
        assert_eq!(incident.record_state.as_deref(), Some("ARCHIVED"));
    }

    #[test]
    fn a_severity_that_is_not_a_finite_number_is_refused() {
        for bad in ["NaN", "inf", "-inf", "high"] {
            let mut detail = gd_detail();
            detail["severity"] = json!(bad);
            let err = parse_event(&guardduty(detail), &ParseContext::default()).unwrap_err();
            assert_eq!(err.error_type(), "InvalidFinding", "{bad}");
            assert!(err.to_string().contains("severity"), "{err}");
        }
    }

    #[test]
    fn an_instance_named_twice_not_adjacently_is_one_instance() {
        let ctx = ParseContext {
            default_region: Some("us-east-1".into()),
            default_account: None,
        };
        let a = "i-0123456789abcdef0";
        let b = "i-0fedcba9876543210";
        let manual = json!({"instanceId": a, "instanceIds": [b, a, b]});
        assert_eq!(
            parse_one(&manual, &ctx).unwrap().incident.instance_ids,
            [a, b]
        );
        let mut finding = asff_of_guardduty();
        let resource = |id: &str| json!({"Type": "AwsEc2Instance", "Id": format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}")});
        finding["Resources"] = json!([resource(a), resource(b), resource(a)]);
        assert_eq!(
            parse_one(&finding, &ctx).unwrap().incident.instance_ids,
            [a, b]
        );
    }
}
