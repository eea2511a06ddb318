//! `readiness`: is this account ready for an incident?
//!
//! Each check reads one setting the playbook relies on and says pass, warn
//! or fail, what it found and the fix. A check that cannot read its setting
//! (access denied, an operation the endpoint lacks) says warn with why:
//! readiness never reports as ready what it did not see. Only a fail makes
//! the account not ready. Reading only: nothing here changes the account.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::aws::{Clients, Responder};
use crate::error::{PlaybookError, Result};
use crate::steps::images::parameter_value;
use crate::steps::isolate::groups::{acquisition_endpoints, ACQUISITION_SERVICES};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// As the playbook needs it.
    Pass,
    /// Works, but less well than it could, or could not be read.
    Warn,
    /// A step of the playbook fails or loses evidence without it.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// What is checked (`cloudtrail.trail`, `guardduty.detector`...).
    pub check: String,
    /// The Region it is about, for a Regional setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub found: String,
    /// How to fix it (empty for a pass).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// Every check of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// The account checked.
    pub account: String,
    /// The Region the responder runs in.
    pub home_region: String,
    /// The Regions checked.
    pub regions: Vec<String>,
    /// The checks, in the order run.
    pub checks: Vec<Check>,
    /// How many failed, warned and passed.
    pub failed: usize,
    /// Warnings.
    pub warned: usize,
    /// Passes.
    pub passed: usize,
}

impl Readiness {
    /// Ready: no check failed.
    pub fn ready(&self) -> bool {
        self.failed == 0
    }
}

/// Which Regions the Regional checks cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regions {
    /// Every Region enabled for the account (EC2 `DescribeRegions`).
    All,
    /// These.
    Listed(Vec<String>),
}

impl Regions {
    /// `all`, or a comma-separated list of Region names.
    pub fn parse(text: &str) -> Result<Self> {
        if text.trim() == "all" {
            return Ok(Self::All);
        }
        let listed: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        let valid = |r: &String| {
            r.len() <= 32
                && r.split('-').count() >= 3
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if listed.is_empty() || !listed.iter().all(valid) {
            return Err(PlaybookError::InvalidRequest(format!(
                "--regions {text:?} is neither `all` nor a list of Region names"
            )));
        }
        Ok(Self::Listed(listed))
    }
}

fn check(name: &str, region: Option<&str>, verdict: Verdict, found: String, fix: &str) -> Check {
    Check {
        check: name.to_owned(),
        region: region.map(str::to_owned),
        verdict,
        found,
        fix: if verdict == Verdict::Pass {
            String::new()
        } else {
            fix.to_owned()
        },
    }
}

/// A check whose setting could not be read: a warning that says why.
fn unread(name: &str, region: Option<&str>, err: &PlaybookError, fix: &str) -> Check {
    check(
        name,
        region,
        Verdict::Warn,
        format!("could not be read: {err} ({})", err.error_type()),
        &format!("let the checking role read it, then check again; {fix}"),
    )
}

/// An error that says the setting is not there (its AWS code starts with
/// one of `absent`) is the `missing` verdict; any other is "could not be
/// read".
fn missing_or_unread(
    name: &str,
    region: Option<&str>,
    err: &PlaybookError,
    absent: &[&str],
    fix: &str,
    missing: impl FnOnce() -> Check,
) -> Check {
    if err
        .aws_code()
        .is_some_and(|code| absent.iter().any(|a| code.starts_with(a)))
    {
        missing()
    } else {
        unread(name, region, err, fix)
    }
}

/// Runs every check: read-only.
pub async fn assess(responder: &Responder, regions: &Regions) -> Result<Readiness> {
    let clients = &responder.clients;
    let home = responder.region.clone();
    let account = responder.identity.account.clone();
    let regions = match regions {
        Regions::All => enabled_regions(clients).await?,
        Regions::Listed(listed) => listed.clone(),
    };
    let mut checks = Vec::new();
    checks.extend(trails(clients, &regions).await);
    for region in &regions {
        let regional = Regional::new(clients, region);
        checks.push(guardduty(&regional, region).await);
        checks.push(encryption_by_default(&regional, region).await);
        checks.push(snapshot_public_access(&regional, region).await);
        checks.push(allowed_images(&regional, region).await);
    }
    checks.push(security_hub(clients, &home).await);
    checks.extend(evidence_bucket(responder).await);
    checks.push(custody_key(responder).await);
    checks.push(golden_ami(responder).await);
    checks.push(forensic_subnets(responder).await);
    checks.extend(ssm_reach(clients, &home).await);
    checks.extend(workload_accounts(responder).await);
    checks.push(approval_topic(responder).await);
    checks.push(dead_letters(responder).await);
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let (failed, warned, passed) = (
        count(Verdict::Fail),
        count(Verdict::Warn),
        count(Verdict::Pass),
    );
    Ok(Readiness {
        account,
        home_region: home,
        regions,
        checks,
        failed,
        warned,
        passed,
    })
}

/// The Regions enabled for the account (opted in or on by default).
async fn enabled_regions(clients: &Clients) -> Result<Vec<String>> {
    let out = clients
        .ec2
        .describe_regions()
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("DescribeRegions", None, &e))?;
    let mut names: Vec<String> = out
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The clients of the Regional checks, in one Region.
struct Regional {
    cloudtrail: aws_sdk_cloudtrail::Client,
    guardduty: aws_sdk_guardduty::Client,
    ec2: aws_sdk_ec2::Client,
}

impl Regional {
    fn new(clients: &Clients, region: &str) -> Self {
        let region = aws_config::Region::new(region.to_owned());
        Self {
            cloudtrail: aws_sdk_cloudtrail::Client::from_conf(
                clients
                    .cloudtrail
                    .config()
                    .to_builder()
                    .region(region.clone())
                    .build(),
            ),
            guardduty: aws_sdk_guardduty::Client::from_conf(
                clients
                    .guardduty
                    .config()
                    .to_builder()
                    .region(region.clone())
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                clients.ec2.config().to_builder().region(region).build(),
            ),
        }
    }
}

/// One trail as readiness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailSeen {
    /// Its ARN.
    pub arn: String,
    /// Its home Region.
    pub home_region: String,
    /// It records every Region.
    pub multi_region: bool,
    /// It is logging now.
    pub logging: bool,
    /// Log-file integrity validation (digest files) is on.
    pub validation: bool,
    /// Its bucket.
    pub bucket: Option<String>,
}

/// The trail checks from what was seen, pure: a logging trail must record
/// each Region, and the best such trail must validate its log files.
pub fn judge_trails(trails: &[TrailSeen], regions: &[String]) -> Vec<Check> {
    const NAME: &str = "cloudtrail.trail";
    let covers =
        |t: &TrailSeen, region: &str| t.logging && (t.multi_region || t.home_region == region);
    let uncovered: Vec<&String> = regions
        .iter()
        .filter(|r| !trails.iter().any(|t| covers(t, r)))
        .collect();
    let mut out = Vec::new();
    let best = trails
        .iter()
        .filter(|t| t.logging && t.multi_region)
        .max_by_key(|t| t.validation);
    match best {
        Some(trail) if trail.validation => out.push(check(
            NAME,
            None,
            Verdict::Pass,
            format!("{} records every Region, logging, log files validated", trail.arn),
            "",
        )),
        Some(trail) => out.push(check(
            NAME,
            None,
            Verdict::Fail,
            format!("{} records every Region but does not validate its log files", trail.arn),
            "aws cloudtrail update-trail --name <trail> --enable-log-file-validation",
        )),
        None => out.push(check(
            NAME,
            None,
            Verdict::Fail,
            format!(
                "no logging multi-Region trail ({} trail(s) seen)",
                trails.len()
            ),
            "aws cloudtrail create-trail --name org-trail --s3-bucket-name <bucket> --is-multi-region-trail --enable-log-file-validation, then start-logging",
        )),
    }
    for region in uncovered {
        out.push(check(
            "cloudtrail.region",
            Some(region),
            Verdict::Fail,
            "no logging trail records this Region: API calls there leave no record".into(),
            "make the trail multi-Region (update-trail --is-multi-region-trail) and start logging",
        ));
    }
    out
}

async fn trails(clients: &Clients, regions: &[String]) -> Vec<Check> {
    let mut seen: BTreeMap<String, TrailSeen> = BTreeMap::new();
    let mut unread_regions: Vec<Check> = Vec::new();
    for region in regions {
        let regional = Regional::new(clients, region);
        let described = regional
            .cloudtrail
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await;
        let described = match described {
            Ok(out) => out,
            Err(e) => {
                unread_regions.push(unread(
                    "cloudtrail.region",
                    Some(region),
                    &PlaybookError::from_sdk("DescribeTrails", None, &e),
                    "",
                ));
                continue;
            }
        };
        for trail in described.trail_list() {
            let Some(arn) = trail.trail_arn() else {
                continue;
            };
            if seen.contains_key(arn) {
                continue;
            }
            let home_region = trail.home_region().unwrap_or(region).to_owned();
            // A trail's status is asked in its home Region.
            let status = Regional::new(clients, &home_region)
                .cloudtrail
                .get_trail_status()
                .name(arn)
                .send()
                .await;
            // A status not read is not logging: the trail covers nothing
            // until it is seen logging, and the reason is said.
            let status = match status {
                Ok(status) => Some(status),
                Err(e) => {
                    unread_regions.push(unread(
                        "cloudtrail.status",
                        Some(&home_region),
                        &PlaybookError::from_sdk("GetTrailStatus", None, &e),
                        "",
                    ));
                    None
                }
            };
            if let Some(error) = status
                .as_ref()
                .and_then(|s| s.latest_delivery_error())
                .filter(|e| !e.is_empty())
            {
                unread_regions.push(check(
                    "cloudtrail.delivery",
                    Some(&home_region),
                    Verdict::Warn,
                    format!("{arn} logs but its last delivery failed: {error}"),
                    "fix the trail bucket's policy or key so CloudTrail can write to it",
                ));
            }
            seen.insert(
                arn.to_owned(),
                TrailSeen {
                    arn: arn.to_owned(),
                    home_region,
                    multi_region: trail.is_multi_region_trail().unwrap_or(false),
                    logging: status.and_then(|s| s.is_logging()).unwrap_or(false),
                    validation: trail.log_file_validation_enabled().unwrap_or(false),
                    bucket: trail.s3_bucket_name().map(str::to_owned),
                },
            );
        }
    }
    let trails: Vec<TrailSeen> = seen.into_values().collect();
    let read: Vec<String> = regions
        .iter()
        .filter(|r| {
            !unread_regions
                .iter()
                .any(|c| c.check == "cloudtrail.region" && c.region.as_deref() == Some(r.as_str()))
        })
        .cloned()
        .collect();
    let mut out = judge_trails(&trails, &read);
    out.extend(unread_regions);
    let buckets: BTreeSet<&str> = trails
        .iter()
        .filter(|t| t.logging)
        .filter_map(|t| t.bucket.as_deref())
        .collect();
    for bucket in buckets {
        out.push(trail_bucket(clients, bucket).await);
    }
    out
}

/// A trail's bucket: public access blocked, versioned (so a delete leaves
/// the logs recoverable).
async fn trail_bucket(clients: &Clients, bucket: &str) -> Check {
    const NAME: &str = "cloudtrail.bucket";
    const FIX: &str = "aws s3api put-public-access-block --bucket <bucket> --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true; put-bucket-versioning Status=Enabled";
    let blocked = clients
        .s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await;
    let all_blocked = match blocked {
        Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(e)
            if e.as_service_error()
                .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
                == Some("NoSuchPublicAccessBlockConfiguration") =>
        {
            false
        }
        Err(e) => {
            return unread(
                NAME,
                None,
                &PlaybookError::from_sdk("GetPublicAccessBlock", None, &e),
                FIX,
            )
        }
    };
    let versioned = match clients
        .s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => out.status().map(|s| s.as_str()) == Some("Enabled"),
        Err(e) => {
            return unread(
                NAME,
                None,
                &PlaybookError::from_sdk("GetBucketVersioning", None, &e),
                FIX,
            )
        }
    };
    match (all_blocked, versioned) {
        (true, true) => check(
            NAME,
            None,
            Verdict::Pass,
            format!("{bucket}: public access blocked, versioned"),
            FIX,
        ),
        (blocked, versioned) => check(
            NAME,
            None,
            Verdict::Fail,
            format!(
                "{bucket}: public access {}, versioning {}",
                if blocked { "blocked" } else { "not blocked" },
                if versioned { "on" } else { "off" }
            ),
            FIX,
        ),
    }
}

async fn guardduty(regional: &Regional, region: &str) -> Check {
    const NAME: &str = "guardduty.detector";
    const FIX: &str = "aws guardduty create-detector --enable --region <region> (or enable it for the organisation)";
    let listed = match regional.guardduty.list_detectors().send().await {
        Ok(out) => out,
        Err(e) => {
            return unread(
                NAME,
                Some(region),
                &PlaybookError::from_sdk("ListDetectors", None, &e),
                FIX,
            )
        }
    };
    for id in listed.detector_ids() {
        match regional
            .guardduty
            .get_detector()
            .detector_id(id)
            .send()
            .await
        {
            Ok(detector) if detector.status().map(|s| s.as_str()) == Some("ENABLED") => {
                return check(
                    NAME,
                    Some(region),
                    Verdict::Pass,
                    format!("detector {id} enabled"),
                    FIX,
                )
            }
            Ok(_) => {}
            Err(e) => {
                return unread(
                    NAME,
                    Some(region),
                    &PlaybookError::from_sdk("GetDetector", None, &e),
                    FIX,
                )
            }
        }
    }
    check(
        NAME,
        Some(region),
        Verdict::Fail,
        format!(
            "no enabled detector ({} detector(s))",
            listed.detector_ids().len()
        ),
        FIX,
    )
}

async fn security_hub(clients: &Clients, home: &str) -> Check {
    const NAME: &str = "securityhub.hub";
    const FIX: &str = "aws securityhub enable-security-hub";
    match clients.securityhub.describe_hub().send().await {
        Ok(hub) => check(
            NAME,
            Some(home),
            Verdict::Pass,
            format!("enabled ({})", hub.hub_arn().unwrap_or("hub")),
            FIX,
        ),
        Err(e) => missing_or_unread(
            NAME,
            Some(home),
            &PlaybookError::from_sdk("DescribeHub", None, &e),
            &["InvalidAccessException", "ResourceNotFoundException"],
            FIX,
            || {
                check(
                    NAME,
                    Some(home),
                    Verdict::Fail,
                    "not enabled: cases are not written back to findings".into(),
                    FIX,
                )
            },
        ),
    }
}

async fn encryption_by_default(regional: &Regional, region: &str) -> Check {
    const NAME: &str = "ebs.encryption-by-default";
    const FIX: &str = "aws ec2 enable-ebs-encryption-by-default --region <region>";
    match regional.ec2.get_ebs_encryption_by_default().send().await {
        Ok(out) if out.ebs_encryption_by_default() == Some(true) => {
            check(NAME, Some(region), Verdict::Pass, "on".into(), FIX)
        }
        Ok(_) => check(
            NAME,
            Some(region),
            Verdict::Warn,
            "off: new volumes and their snapshots may be unencrypted".into(),
            FIX,
        ),
        Err(e) => unread(
            NAME,
            Some(region),
            &PlaybookError::from_sdk("GetEbsEncryptionByDefault", None, &e),
            FIX,
        ),
    }
}

/// Judges EBS snapshot Block Public Access's state, pure.
pub fn judge_snapshot_public_access(state: &str, region: &str) -> Check {
    const NAME: &str = "ebs.snapshot-block-public-access";
    const FIX: &str =
        "aws ec2 enable-snapshot-block-public-access --state block-all-sharing --region <region>";
    match state {
        "block-all-sharing" => check(NAME, Some(region), Verdict::Pass, state.into(), FIX),
        "block-new-sharing" => check(
            NAME,
            Some(region),
            Verdict::Warn,
            "block-new-sharing: snapshots already public stay public".into(),
            FIX,
        ),
        other => check(
            NAME,
            Some(region),
            Verdict::Fail,
            format!("{other}: a snapshot (evidence included) can be made public"),
            FIX,
        ),
    }
}

async fn snapshot_public_access(regional: &Regional, region: &str) -> Check {
    match regional
        .ec2
        .get_snapshot_block_public_access_state()
        .send()
        .await
    {
        Ok(out) => judge_snapshot_public_access(
            out.state().map(|s| s.as_str()).unwrap_or("unblocked"),
            region,
        ),
        Err(e) => unread(
            "ebs.snapshot-block-public-access",
            Some(region),
            &PlaybookError::from_sdk("GetSnapshotBlockPublicAccessState", None, &e),
            "aws ec2 enable-snapshot-block-public-access --state block-all-sharing",
        ),
    }
}

/// Judges EC2's Allowed AMIs setting, pure: `enabled` passes, audit mode and
/// off warn (the detective `check-ami` still sees each launch).
/// A criterion without image providers allows any provider's image that
/// meets its other conditions (a name anyone can give a public image): it
/// is said, and warned of, whatever the state.
pub fn judge_allowed_images(state: &str, criteria: &[String], region: &str) -> Check {
    const NAME: &str = "ec2.allowed-amis";
    const FIX: &str = "ec2-forensics readiness --fix allowed-amis (audit mode first), then aws ec2 enable-allowed-images-settings --allowed-images-settings-state enabled";
    let open: Vec<&String> = criteria
        .iter()
        .filter(|c| c.starts_with("any provider"))
        .collect();
    if state == "enabled" && !open.is_empty() {
        return check(
            NAME,
            Some(region),
            Verdict::Warn,
            format!(
                "enabled, but a criterion names no image provider, so anyone's public image meeting it is allowed; criteria: {}",
                criteria_text(criteria)
            ),
            "give every criterion ImageProviders (account ids, amazon, aws-marketplace, aws-backup-vault)",
        );
    }
    match state {
        "enabled" => check(
            NAME,
            Some(region),
            Verdict::Pass,
            format!("enabled; criteria: {}", criteria_text(criteria)),
            FIX,
        ),
        "audit-mode" => check(
            NAME,
            Some(region),
            Verdict::Warn,
            format!(
                "audit mode, launches are not refused; criteria: {}",
                criteria_text(criteria)
            ),
            FIX,
        ),
        other => check(
            NAME,
            Some(region),
            Verdict::Warn,
            format!("{other}: any image can be launched"),
            FIX,
        ),
    }
}

/// Every condition of an Allowed AMIs criterion, in words.
fn describe_criterion(c: &aws_sdk_ec2::types::ImageCriterion) -> String {
    let mut parts = vec![if c.image_providers().is_empty() {
        "any provider".to_owned()
    } else {
        format!("providers {}", c.image_providers().join(", "))
    }];
    if !c.image_names().is_empty() {
        parts.push(format!("names {}", c.image_names().join(", ")));
    }
    if !c.marketplace_product_codes().is_empty() {
        parts.push(format!(
            "marketplace codes {}",
            c.marketplace_product_codes().join(", ")
        ));
    }
    if let Some(days) = c
        .creation_date_condition()
        .and_then(|d| d.maximum_days_since_created())
    {
        parts.push(format!("created within {days} days"));
    }
    if let Some(days) = c
        .deprecation_time_condition()
        .and_then(|d| d.maximum_days_since_deprecated())
    {
        parts.push(format!("deprecated at most {days} days"));
    }
    parts.join("; ")
}

fn criteria_text(criteria: &[String]) -> String {
    if criteria.is_empty() {
        "none (every image refused once enabled)".into()
    } else {
        criteria.join(" | ")
    }
}

async fn allowed_images(regional: &Regional, region: &str) -> Check {
    match regional.ec2.get_allowed_images_settings().send().await {
        Ok(out) => {
            let criteria: Vec<String> = out
                .image_criteria()
                .iter()
                .map(describe_criterion)
                .collect();
            judge_allowed_images(out.state().unwrap_or("disabled"), &criteria, region)
        }
        Err(e) => unread(
            "ec2.allowed-amis",
            Some(region),
            &PlaybookError::from_sdk("GetAllowedImagesSettings", None, &e),
            "",
        ),
    }
}

/// The evidence bucket: Object Lock in compliance mode, versioning, a policy.
async fn evidence_bucket(responder: &Responder) -> Vec<Check> {
    const NAME: &str = "evidence.bucket";
    let Some(bucket) = responder.config.evidence_bucket.as_deref() else {
        return vec![check(
            NAME,
            None,
            Verdict::Fail,
            "EVIDENCE_BUCKET is not set".into(),
            "deploy the stack (its EvidenceBucket) or set EVIDENCE_BUCKET",
        )];
    };
    let s3 = &responder.clients.s3;
    let mut out = Vec::new();
    let lock_fix = "evidence needs a bucket created with Object Lock and a COMPLIANCE default retention (the stack's EvidenceBucket)";
    match s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(lock) => {
            let config = lock.object_lock_configuration();
            let enabled = config
                .and_then(|c| c.object_lock_enabled())
                .map(|e| e.as_str())
                == Some("Enabled");
            let mode = config
                .and_then(|c| c.rule())
                .and_then(|r| r.default_retention())
                .and_then(|d| d.mode())
                .map(|m| m.as_str().to_owned());
            let verdict = match (enabled, mode.as_deref()) {
                (true, Some("COMPLIANCE")) => Verdict::Pass,
                (true, _) => Verdict::Warn,
                _ => Verdict::Fail,
            };
            out.push(check(
                "evidence.object-lock",
                None,
                verdict,
                format!(
                    "{bucket}: Object Lock {}, default retention {}",
                    if enabled { "on" } else { "off" },
                    mode.as_deref().unwrap_or("none")
                ),
                lock_fix,
            ));
        }
        Err(e) => out.push(missing_or_unread(
            "evidence.object-lock",
            None,
            &PlaybookError::from_sdk("GetObjectLockConfiguration", None, &e),
            &["ObjectLockConfigurationNotFoundError"],
            lock_fix,
            || {
                check(
                    "evidence.object-lock",
                    None,
                    Verdict::Fail,
                    format!("{bucket}: no Object Lock: anyone who can write the bucket can delete evidence"),
                    lock_fix,
                )
            },
        )),
    }
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(v) if v.status().map(|s| s.as_str()) == Some("Enabled") => {
            out.push(check("evidence.versioning", None, Verdict::Pass, format!("{bucket}: versioned"), ""))
        }
        Ok(_) => out.push(check(
            "evidence.versioning",
            None,
            Verdict::Fail,
            format!("{bucket}: not versioned"),
            "aws s3api put-bucket-versioning --bucket <bucket> --versioning-configuration Status=Enabled",
        )),
        Err(e) => out.push(unread("evidence.versioning", None, &PlaybookError::from_sdk("GetBucketVersioning", None, &e), "")),
    }
    let policy_fix = "deploy the stack's EvidenceBucketPolicy (TLS only, no deletes of evidence, writes only by the responder's roles)";
    let no_policy = || {
        check(
            "evidence.policy",
            None,
            Verdict::Fail,
            format!("{bucket}: no bucket policy"),
            policy_fix,
        )
    };
    match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(p) if p.policy().is_some_and(|p| !p.is_empty()) => {
            let document = p
                .policy()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .unwrap_or_default();
            let (verdict, found) = judge_evidence_policy(&document);
            out.push(check(
                "evidence.policy",
                None,
                verdict,
                format!("{bucket}: {found}"),
                policy_fix,
            ));
        }
        Ok(_) => out.push(no_policy()),
        Err(e) => out.push(missing_or_unread(
            "evidence.policy",
            None,
            &PlaybookError::from_sdk("GetBucketPolicy", None, &e),
            &["NoSuchBucketPolicy"],
            policy_fix,
            no_policy,
        )),
    }
    out
}

/// The statements of a policy document, one or many.
fn statements(policy: &Value) -> Vec<Value> {
    match &policy["Statement"] {
        Value::Array(list) => list.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// A policy field that is a string or a list of strings, as a list.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a statement is a Deny for every principal.
fn denies_everyone(s: &Value) -> bool {
    s["Effect"] == "Deny"
        && (s["Principal"] == "*" || strings(&s["Principal"]["AWS"]).iter().any(|p| p == "*"))
}

/// Judges the evidence bucket's policy, pure: deleting a version of
/// evidence denied to everyone, unconditionally (Object Lock keeps a locked
/// version, but not a version past its retention, nor a delete marker's
/// effect on readers), and plain HTTP denied.
pub fn judge_evidence_policy(policy: &Value) -> (Verdict, String) {
    let all = statements(policy);
    let deletes = all.iter().any(|s| {
        denies_everyone(s)
            && s.get("Condition").is_none()
            && strings(&s["Action"])
                .iter()
                .any(|a| matches!(a.as_str(), "s3:DeleteObjectVersion" | "s3:Delete*" | "s3:*"))
    });
    let tls = all
        .iter()
        .any(|s| denies_everyone(s) && s["Condition"]["Bool"]["aws:SecureTransport"] == "false");
    match (deletes, tls) {
        (true, true) => (
            Verdict::Pass,
            "denies deleting evidence versions and plain HTTP to everyone".into(),
        ),
        (true, false) => (
            Verdict::Warn,
            "denies deleting evidence versions, but not plain HTTP".into(),
        ),
        (false, _) => (
            Verdict::Fail,
            "the bucket policy does not deny deleting evidence versions to everyone".into(),
        ),
    }
}

/// Whether a key policy keeps `kms:Sign` to the principals one condition
/// names: a Deny of Sign (or `kms:*`) for every principal unless its ARN
/// matches. Returns the ARN pattern, pure.
pub fn sign_limited_to(policy: &Value, account: &str) -> Option<String> {
    statements(policy).iter().find_map(|s| {
        let signs = strings(&s["Action"])
            .iter()
            .any(|a| a == "kms:Sign" || a == "kms:*");
        let every_resource = strings(&s["Resource"]).as_slice() == ["*"];
        if !denies_everyone(s)
            || !signs
            || !every_resource
            || s.get("NotAction").is_some()
            || s.get("NotResource").is_some()
        {
            return None;
        }
        // One condition, on the principal's ARN, with one pattern: another
        // condition narrows when the Deny applies, and several patterns
        // widen who may sign.
        let conditions = s["Condition"].as_object()?;
        let (operator, keys) = match conditions.iter().collect::<Vec<_>>().as_slice() {
            [(operator, keys)] => (operator.as_str(), keys.as_object()?),
            _ => return None,
        };
        let negated = [
            "ArnNotLike",
            "ArnNotEquals",
            "StringNotLike",
            "StringNotEquals",
        ];
        if !negated.contains(&operator) || keys.len() != 1 {
            return None;
        }
        match strings(keys.get("aws:PrincipalArn")?).as_slice() {
            [pattern] if names_one_role_path(pattern, account) => Some(pattern.clone()),
            _ => None,
        }
    })
}

/// Whether an ARN pattern names roles of `account` under a role path or
/// name, not the whole account (`arn:aws:iam::111:role/stack/signer/*`
/// does; `arn:aws:iam::111:*` or `arn:aws:iam::*:role/*` does not).
fn names_one_role_path(pattern: &str, account: &str) -> bool {
    let parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let ["arn", _, "iam", "", owner, resource] = parts.as_slice() else {
        return false;
    };
    let Some(path) = resource.strip_prefix("role/") else {
        return false;
    };
    let named = path.split(['*', '?']).next().unwrap_or_default();
    *owner == account && !named.is_empty()
}

async fn custody_key(responder: &Responder) -> Check {
    const NAME: &str = "custody.key";
    const FIX: &str = "the stack's CustodySigningKey: ECC_NIST_P256, SIGN_VERIFY, enabled, a key policy denying kms:Sign to all but the seal role";
    let Some(key) = responder.config.custody_signing_key.as_deref() else {
        return check(
            NAME,
            None,
            Verdict::Fail,
            "CUSTODY_SIGNING_KEY is not set: manifests are not signed".into(),
            FIX,
        );
    };
    let kms = &responder.clients.kms;
    let described = match kms.describe_key().key_id(key).send().await {
        Ok(out) => out,
        Err(e) => {
            return unread(
                NAME,
                None,
                &PlaybookError::from_sdk("DescribeKey", None, &e),
                FIX,
            )
        }
    };
    let Some(meta) = described.key_metadata() else {
        return check(
            NAME,
            None,
            Verdict::Fail,
            format!("{key}: no key metadata"),
            FIX,
        );
    };
    let spec = meta.key_spec().map(|s| s.as_str()).unwrap_or("unknown");
    let usage = meta.key_usage().map(|u| u.as_str()).unwrap_or("unknown");
    let state = meta.key_state().map(|s| s.as_str()).unwrap_or("unknown");
    // A replica of a multi-Region key has a key policy of its own, and
    // imported key material is held outside KMS too: either way a
    // signature could come from elsewhere.
    if meta.multi_region() == Some(true)
        || meta.origin() != Some(&aws_sdk_kms::types::OriginType::AwsKms)
    {
        return check(
            NAME,
            None,
            Verdict::Fail,
            format!(
                "{key}: multi-Region {}, origin {}: a signature may come from a replica or from key material outside KMS",
                meta.multi_region().unwrap_or(false),
                meta.origin().map(|o| o.as_str()).unwrap_or("unknown")
            ),
            FIX,
        );
    }
    if spec != "ECC_NIST_P256" || usage != "SIGN_VERIFY" || state != "Enabled" {
        return check(
            NAME,
            None,
            Verdict::Fail,
            format!("{key}: {spec}, {usage}, {state}"),
            FIX,
        );
    }
    let policy = match kms
        .get_key_policy()
        .key_id(meta.key_id())
        .policy_name("default")
        .send()
        .await
    {
        Ok(out) => out
            .policy()
            .and_then(|p| serde_json::from_str::<Value>(p).ok()),
        Err(e) => {
            return unread(
                NAME,
                None,
                &PlaybookError::from_sdk("GetKeyPolicy", None, &e),
                FIX,
            )
        }
    };
    match policy
        .as_ref()
        .and_then(|p| sign_limited_to(p, &responder.identity.account))
    {
        Some(pattern) => check(
            NAME,
            None,
            Verdict::Pass,
            format!("{key}: ECC_NIST_P256, enabled; only {pattern} signs"),
            FIX,
        ),
        None => check(
            NAME,
            None,
            Verdict::Fail,
            format!("{key}: ECC_NIST_P256, enabled, but its key policy lets any principal the account allows sign: a signature proves nothing"),
            FIX,
        ),
    }
}

/// Judges the golden AMI, pure: available, owned by the account, and no
/// older than the policy's limit.
pub fn judge_golden_ami(
    image_id: &str,
    state: &str,
    owner: &str,
    account: &str,
    age_seconds: Option<i64>,
    max_days: u32,
) -> Check {
    let age_days = age_seconds.map(|s| s / 86_400);
    const NAME: &str = "workstation.golden-ami";
    const FIX: &str = "build the workstation image again (its tools and rules current) and put its id in the golden AMI parameter";
    let mut problems = Vec::new();
    if state != "available" {
        problems.push(format!("state {state}"));
    }
    if owner != account {
        problems.push(format!("owned by {owner}, not this account"));
    }
    match (age_seconds, age_days) {
        (Some(seconds), Some(days)) if seconds > i64::from(max_days) * 86_400 => problems.push(
            format!("{days} days old (policy limit goldenAmiMaxAgeDays {max_days})"),
        ),
        (None, _) => problems.push("no creation date".into()),
        _ => {}
    }
    if problems.is_empty() {
        check(
            NAME,
            None,
            Verdict::Pass,
            format!(
                "{image_id}: available, owned, {} days old",
                age_days.unwrap_or_default()
            ),
            FIX,
        )
    } else {
        check(
            NAME,
            None,
            Verdict::Fail,
            format!("{image_id}: {}", problems.join("; ")),
            FIX,
        )
    }
}

async fn golden_ami(responder: &Responder) -> Check {
    const NAME: &str = "workstation.golden-ami";
    let Some(parameter) = responder.config.golden_ami_parameter.as_deref() else {
        return check(
            NAME,
            None,
            Verdict::Fail,
            "GOLDEN_AMI_PARAMETER is not set: no workstation can be launched".into(),
            "set the stack's GoldenAmiParameterName",
        );
    };
    let id = match parameter_value(&responder.clients, parameter).await {
        Ok(id) => id.trim().to_owned(),
        Err(e) if e.aws_code() == Some("ParameterNotFound") => {
            return check(
                NAME,
                None,
                Verdict::Fail,
                format!("{parameter} does not exist"),
                "aws ssm put-parameter --name <parameter> --type String --value ami-...",
            )
        }
        Err(e) => return unread(NAME, None, &e, ""),
    };
    let images = match responder
        .clients
        .ec2
        .describe_images()
        .image_ids(&id)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let err = PlaybookError::from_sdk("DescribeImages", None, &e);
            return missing_or_unread(NAME, None, &err, &["InvalidAMIID"], "", || {
                check(
                    NAME,
                    None,
                    Verdict::Fail,
                    format!("{parameter} names {id}, which cannot be described: {err}"),
                    "put a current image id in the parameter",
                )
            });
        }
    };
    let Some(image) = images.images().first() else {
        return check(
            NAME,
            None,
            Verdict::Fail,
            format!("{parameter} names {id}, which does not exist"),
            "put a current image id in the parameter",
        );
    };
    let age = image
        .creation_date()
        .and_then(|d| {
            aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::DateTime)
                .ok()
        })
        .map(|created| {
            aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs() - created.secs()
        });
    judge_golden_ami(
        &id,
        image.state().map(|s| s.as_str()).unwrap_or("unknown"),
        image.owner_id().unwrap_or("unknown"),
        &responder.identity.account,
        age,
        responder.policy.golden_ami_max_age_days,
    )
}

/// `FORENSIC_SUBNETS` (`zone=subnet,...`): a subnet that exists, in its
/// zone, for every zone of the Region.
async fn forensic_subnets(responder: &Responder) -> Check {
    const NAME: &str = "workstation.subnets";
    const FIX: &str = "give FORENSIC_SUBNETS (the stack's ForensicSubnets) a subnet in every zone: a volume is read in its own zone";
    let configured: BTreeMap<String, String> = responder
        .config
        .forensic_subnets
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(zone, subnet)| (zone.trim().to_owned(), subnet.trim().to_owned()))
        .collect();
    let ec2 = &responder.clients.ec2;
    let zones = match ec2.describe_availability_zones().send().await {
        Ok(out) => out
            .availability_zones()
            .iter()
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter_map(|z| z.zone_name().map(str::to_owned))
            .collect::<BTreeSet<String>>(),
        Err(e) => {
            return unread(
                NAME,
                None,
                &PlaybookError::from_sdk("DescribeAvailabilityZones", None, &e),
                FIX,
            )
        }
    };
    let mut existing: BTreeMap<String, String> = BTreeMap::new();
    if !configured.is_empty() {
        let ids: Vec<String> = configured.values().cloned().collect();
        match ec2
            .describe_subnets()
            .set_subnet_ids(Some(ids))
            .send()
            .await
        {
            Ok(out) => {
                for subnet in out.subnets() {
                    if let (Some(id), Some(zone)) = (subnet.subnet_id(), subnet.availability_zone())
                    {
                        existing.insert(id.to_owned(), zone.to_owned());
                    }
                }
            }
            Err(e) => {
                let err = PlaybookError::from_sdk("DescribeSubnets", None, &e);
                return missing_or_unread(NAME, None, &err, &["InvalidSubnetID"], FIX, || {
                    check(
                        NAME,
                        None,
                        Verdict::Fail,
                        format!("a configured subnet does not exist: {err}"),
                        FIX,
                    )
                });
            }
        }
    }
    let wrong: Vec<String> = configured
        .iter()
        .filter(|(zone, subnet)| existing.get(*subnet) != Some(*zone))
        .map(|(zone, subnet)| format!("{subnet} is not in {zone}"))
        .collect();
    let missing: Vec<&String> = zones
        .iter()
        .filter(|z| !configured.contains_key(*z))
        .collect();
    if configured.is_empty() {
        return check(
            NAME,
            None,
            Verdict::Fail,
            "FORENSIC_SUBNETS is not set".into(),
            FIX,
        );
    }
    if !wrong.is_empty() {
        return check(NAME, None, Verdict::Fail, wrong.join("; "), FIX);
    }
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|z| z.as_str()).collect();
        return check(
            NAME,
            None,
            Verdict::Warn,
            format!(
                "no forensic subnet in {}: a case there cannot attach its evidence",
                list.join(", ")
            ),
            FIX,
        );
    }
    check(
        NAME,
        None,
        Verdict::Pass,
        format!("a subnet in each of {} zone(s)", zones.len()),
        FIX,
    )
}

/// The workload VPCs' SSM endpoints (which VPCs can isolate before memory
/// is captured) and the share of running instances SSM manages.
async fn ssm_reach(clients: &Clients, home: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let ec2 = &clients.ec2;
    let vpcs: Vec<String> = match ec2.describe_vpcs().send().await {
        Ok(v) => v
            .vpcs()
            .iter()
            .filter_map(|v| v.vpc_id().map(str::to_owned))
            .collect(),
        Err(e) => {
            out.push(unread(
                "ssm.endpoints",
                Some(home),
                &PlaybookError::from_sdk("DescribeVpcs", None, &e),
                "",
            ));
            Vec::new()
        }
    };
    // The product's own test of a VPC (isolate-network asks the same):
    // available interface endpoints with private DNS for ssm, ssmmessages,
    // ec2messages and s3.
    let (mut ready, mut not, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    for vpc in &vpcs {
        match acquisition_endpoints(ec2, vpc).await {
            Ok((_, true)) => ready.push(vpc.as_str()),
            Ok((_, false)) => not.push(vpc.as_str()),
            Err(e) => unreadable.push(format!("{vpc} ({})", e.error_type())),
        }
    }
    let list = |l: &[&str]| {
        if l.is_empty() {
            "none".to_owned()
        } else {
            l.join(", ")
        }
    };
    let mut found = format!(
        "isolate-first (usable {} endpoints): {}; memory before isolation: {}",
        ACQUISITION_SERVICES.join(", "),
        list(&ready),
        list(&not)
    );
    if !unreadable.is_empty() {
        found.push_str(&format!("; not read: {}", unreadable.join(", ")));
    }
    if !vpcs.is_empty() || out.is_empty() {
        out.push(check(
            "ssm.endpoints",
            Some(home),
            if not.is_empty() && unreadable.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Warn
            },
            found,
            "add interface endpoints (private DNS on) for ssm, ssmmessages, ec2messages and s3 to each workload VPC: an instance there is then isolated before its memory is captured",
        ));
    }
    out.push(ssm_managed(clients, home).await);
    out
}

async fn ssm_managed(clients: &Clients, home: &str) -> Check {
    const NAME: &str = "ssm.managed";
    const FIX: &str = "give instances the SSM agent and an instance profile with AmazonSSMManagedInstanceCore: memory is captured only through SSM";
    let running: BTreeSet<String> = match crate::steps::images::not_terminated(clients).await {
        Ok(list) => list
            .iter()
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect(),
        Err(e) => return unread(NAME, Some(home), &e, FIX),
    };
    let mut managed = BTreeSet::new();
    let mut pages = clients
        .ssm
        .describe_instance_information()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => managed.extend(
                page.instance_information_list()
                    .iter()
                    .filter(|i| i.ping_status().map(|p| p.as_str()) == Some("Online"))
                    .filter_map(|i| i.instance_id().map(str::to_owned)),
            ),
            Err(e) => {
                return unread(
                    NAME,
                    Some(home),
                    &PlaybookError::from_sdk("DescribeInstanceInformation", None, &e),
                    FIX,
                )
            }
        }
    }
    let reached = running.iter().filter(|i| managed.contains(*i)).count();
    let found = format!(
        "{reached} of {} running instance(s) online in SSM",
        running.len()
    );
    let verdict = if reached == running.len() {
        Verdict::Pass
    } else {
        Verdict::Warn
    };
    check(NAME, Some(home), verdict, found, FIX)
}

/// Every other allowed account: the workload role can be assumed and the
/// run-script document is shared with it.
async fn workload_accounts(responder: &Responder) -> Vec<Check> {
    let own = &responder.identity.account;
    let others: Vec<&String> = responder
        .allowed_accounts
        .iter()
        .filter(|a| *a != own)
        .collect();
    if others.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let Some(role) = responder.config.workload_role_name.as_deref() else {
        out.push(check(
            "workload.role",
            None,
            Verdict::Fail,
            format!(
                "ALLOWED_ACCOUNTS names {} other account(s) but WORKLOAD_ROLE_NAME is not set",
                others.len()
            ),
            "deploy infra/aws/workload-role.yaml in each account and set WorkloadRoleName",
        ));
        return out;
    };
    let partition = responder
        .identity
        .actor
        .split(':')
        .nth(1)
        .unwrap_or("aws")
        .to_owned();
    for account in &others {
        let arn = format!("arn:{partition}:iam::{account}:role/{role}");
        let assumed = responder
            .clients
            .sts
            .assume_role()
            .role_arn(&arn)
            .role_session_name("ec2-forensics-readiness")
            .duration_seconds(900)
            // Whether the role can be assumed is all readiness asks: the
            // session may do nothing (an inline session policy can only
            // narrow the role's permissions).
            .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#)
            .send()
            .await;
        out.push(match assumed {
            Ok(_) => check(
                "workload.role",
                None,
                Verdict::Pass,
                format!("{arn} assumed"),
                "",
            ),
            Err(e) => check(
                "workload.role",
                None,
                Verdict::Fail,
                format!(
                    "{arn} cannot be assumed: {}",
                    PlaybookError::from_sdk("AssumeRole", None, &e)
                ),
                "deploy infra/aws/workload-role.yaml in that account, trusting this stack's roles",
            ),
        });
    }
    let Some(document) = responder.config.run_script_document.as_deref() else {
        return out;
    };
    match responder
        .clients
        .ssm
        .describe_document_permission()
        .name(document)
        .permission_type(aws_sdk_ssm::types::DocumentPermissionType::Share)
        .send()
        .await
    {
        Ok(shared) => {
            let with: BTreeSet<&str> = shared.account_ids().iter().map(String::as_str).collect();
            let missing: Vec<&str> = others
                .iter()
                .map(|a| a.as_str())
                .filter(|a| !with.contains(a))
                .collect();
            out.push(if with.contains("all") {
                // Shared with every AWS account: it runs anywhere, and
                // anyone can read the script it carries.
                check(
                    "workload.document",
                    None,
                    Verdict::Warn,
                    format!("{document} is public (shared with all accounts)"),
                    "share it with the allowed accounts only (modify-document-permission --account-ids-to-remove all)",
                )
            } else if missing.is_empty() {
                check("workload.document", None, Verdict::Pass, format!("{document} shared with every allowed account"), "")
            } else {
                check(
                    "workload.document",
                    None,
                    Verdict::Fail,
                    format!("{document} is not shared with {}: no script runs there", missing.join(", ")),
                    "aws ssm modify-document-permission --name <document> --permission-type Share --account-ids-to-add <account>",
                )
            });
        }
        Err(e) => out.push(unread(
            "workload.document",
            None,
            &PlaybookError::from_sdk("DescribeDocumentPermission", None, &e),
            "",
        )),
    }
    out
}

/// The approval topic has a confirmed subscriber: someone hears of a case
/// waiting for a person.
async fn approval_topic(responder: &Responder) -> Check {
    const NAME: &str = "approval.topic";
    const FIX: &str =
        "subscribe the on-call address to the stack's ApprovalTopicArn and confirm it";
    let Some(topic) = responder.config.approval_topic_arn.as_deref() else {
        return check(
            NAME,
            None,
            Verdict::Fail,
            "APPROVAL_TOPIC_ARN is not set: no one is asked to approve".into(),
            FIX,
        );
    };
    let mut confirmed = 0;
    let mut pending = 0;
    let mut pages = responder
        .clients
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for sub in page.subscriptions() {
                    match sub.subscription_arn() {
                        Some(arn) if arn.starts_with("arn:") => confirmed += 1,
                        _ => pending += 1,
                    }
                }
            }
            Err(e) => {
                return unread(
                    NAME,
                    None,
                    &PlaybookError::from_sdk("ListSubscriptionsByTopic", None, &e),
                    FIX,
                )
            }
        }
    }
    if confirmed > 0 {
        check(
            NAME,
            None,
            Verdict::Pass,
            format!("{confirmed} confirmed subscriber(s)"),
            FIX,
        )
    } else {
        check(
            NAME,
            None,
            Verdict::Fail,
            format!("no confirmed subscriber ({pending} pending): a case waiting for approval reaches no one"),
            FIX,
        )
    }
}

/// The dead-letter queue is empty: every event a rule delivered opened its
/// case (or was refused on purpose), and every scheduled run ran. A message
/// there is an event the responder failed on after all its retries.
async fn dead_letters(responder: &Responder) -> Check {
    const NAME: &str = "dead-letter.queue";
    const FIX: &str = "read each message of the stack's dead-letter queue (an event or scheduled run a function failed on), \
        start a case by hand where one is missing (`ec2-forensics start --instance ID --reason ...`), then delete the message";
    let Some(queue) = responder.config.dead_letter_queue_url.as_deref() else {
        return check(
            NAME,
            None,
            Verdict::Warn,
            "DEAD_LETTER_QUEUE_URL is not set: failed deliveries were not looked for".into(),
            "set DEAD_LETTER_QUEUE_URL to the stack's DeadLetterQueueUrl output",
        );
    };
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let counted = [
        Name::ApproximateNumberOfMessages,
        Name::ApproximateNumberOfMessagesNotVisible,
        Name::ApproximateNumberOfMessagesDelayed,
    ];
    let out = match responder
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(queue)
        .set_attribute_names(Some(counted.to_vec()))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            return unread(
                NAME,
                None,
                &PlaybookError::from_sdk("GetQueueAttributes", None, &e),
                FIX,
            )
        }
    };
    let attributes = out.attributes();
    let mut waiting = 0u64;
    for name in &counted {
        match attributes
            .and_then(|a| a.get(name))
            .map(|v| v.parse::<u64>())
        {
            Some(Ok(n)) => waiting += n,
            _ => {
                return check(
                    NAME,
                    None,
                    Verdict::Warn,
                    format!(
                        "could not be read: the queue did not say its {}",
                        name.as_str()
                    ),
                    FIX,
                )
            }
        }
    }
    if waiting == 0 {
        check(NAME, None, Verdict::Pass, "empty".into(), FIX)
    } else {
        check(
            NAME,
            None,
            Verdict::Fail,
            format!("{waiting} message(s) (approximate): events or scheduled runs the responder failed on"),
            FIX,
        )
    }
}

/// The most of one check's text an SNS summary carries (an e-mail stays
/// readable, and the message well under SNS's 256 KB, whatever a trail or
/// bucket name holds).
const SUMMARY_TEXT_LIMIT: usize = 400;

/// The readiness as an SNS message: a subject (ASCII, under SNS's 100
/// characters) and a body that lists what failed, then what warned, each
/// with its fix, then how many passed. Every text made plain: a name from
/// the account is data, never a line of the message's own.
pub fn summary(readiness: &Readiness) -> (String, String) {
    let subject = format!(
        "ec2-forensics readiness: {} ({} failed, {} warned)",
        if readiness.ready() {
            "ready"
        } else {
            "NOT ready"
        },
        readiness.failed,
        readiness.warned
    );
    let shown = |text: &str| {
        let plain = crate::case::text::plain(text);
        if plain.chars().count() > SUMMARY_TEXT_LIMIT {
            let cut: String = plain.chars().take(SUMMARY_TEXT_LIMIT).collect();
            format!("{cut}...")
        } else {
            plain
        }
    };
    let mut body = format!(
        "Account {} (home Region {}), {} Region(s) checked: {} failed, {} warned, {} passed.\n",
        shown(&readiness.account),
        shown(&readiness.home_region),
        readiness.regions.len(),
        readiness.failed,
        readiness.warned,
        readiness.passed
    );
    for (verdict, heading) in [(Verdict::Fail, "FAILED"), (Verdict::Warn, "WARNED")] {
        let listed: Vec<&Check> = readiness
            .checks
            .iter()
            .filter(|c| c.verdict == verdict)
            .collect();
        if listed.is_empty() {
            continue;
        }
        body.push_str(&format!("\n{heading}\n"));
        for c in listed {
            let region = c
                .region
                .as_deref()
                .map(|r| format!(" [{}]", shown(r)))
                .unwrap_or_default();
            body.push_str(&format!(
                "- {}{region}: {}\n  fix: {}\n",
                shown(&c.check),
                shown(&c.found),
                shown(&c.fix)
            ));
        }
    }
    body.push_str(
        "\nThe same checks, with the ones that passed: ec2-forensics readiness --regions all\n",
    );
    (subject, body)
}

/// The scheduled run: every check in every enabled Region, published to the
/// approval topic (whoever approves cases hears that the account is not
/// ready before an incident shows it), and returned. A run whose checks
/// could not start, or whose summary could not be published, fails (and so
/// reaches the dead-letter queue after its retries).
pub async fn scheduled(responder: &Responder) -> Result<Readiness> {
    let readiness = assess(responder, &Regions::All).await?;
    let topic =
        crate::aws::Config::required(&responder.config.approval_topic_arn, "APPROVAL_TOPIC_ARN")?;
    let (subject, message) = summary(&readiness);
    crate::steps::approval::publish(responder, topic, subject, message).await?;
    tracing::info!(
        failed = readiness.failed,
        warned = readiness.warned,
        passed = readiness.passed,
        "readiness published"
    );
    Ok(readiness)
}

/// The Allowed AMIs criteria the policy's `approvedImages` can be said in,
/// and what it approves that they cannot say, pure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedImagesPlan {
    /// Image providers (account ids, `amazon`, `aws-marketplace`,
    /// `aws-backup-vault`) of the one criterion.
    pub image_providers: Vec<String>,
    /// Image-name patterns of that criterion (every name when empty).
    pub image_names: Vec<String>,
    /// What the policy approves that no criterion can say: once the
    /// setting is enabled, launches approved only that way are refused.
    pub not_expressible: Vec<String>,
}

/// Allowed AMIs' own names for providers.
const PROVIDER_ALIASES: [&str; 3] = ["amazon", "aws-marketplace", "aws-backup-vault"];

/// The criteria of `approvedImages`, pure.
pub fn allowed_images_plan(
    rules: &crate::case::policy::ApprovedImages,
) -> Result<AllowedImagesPlan> {
    // check-ami matches an owner by id or alias only (`self` never): the
    // criterion names exactly those, never wider than the policy.
    let providers: Vec<String> = rules.owners.clone();
    if let Some(bad) = providers.iter().find(|p| {
        !(PROVIDER_ALIASES.contains(&p.as_str())
            || (p.len() == 12 && p.chars().all(|c| c.is_ascii_digit())))
    }) {
        return Err(PlaybookError::InvalidPolicy(format!(
            "approvedImages.owners {bad} is neither an account id nor one of {}: Allowed AMIs cannot name it",
            PROVIDER_ALIASES.join(", ")
        )));
    }
    if providers.is_empty() {
        return Err(PlaybookError::InvalidPolicy(
            "approvedImages names no owners: Allowed AMIs approves by provider, so it would refuse every launch".into(),
        ));
    }
    let mut not_expressible = Vec::new();
    if !rules.image_ids.is_empty() {
        not_expressible.push(format!(
            "imageIds ({}): Allowed AMIs has no image-id criterion",
            rules.image_ids.join(", ")
        ));
    }
    if let Some(parameter) = &rules.parameter {
        not_expressible.push(format!(
            "the ids listed in {parameter}: Allowed AMIs has no image-id criterion"
        ));
    }
    if let Some(tag) = &rules.tag {
        not_expressible.push(format!(
            "the tag condition ({}): Allowed AMIs has no tag criterion, so the criterion is wider than the policy",
            tag.key
        ));
    }
    Ok(AllowedImagesPlan {
        image_providers: providers,
        image_names: rules.name_patterns.clone(),
        not_expressible,
    })
}

/// What `readiness --fix allowed-amis` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedImagesFix {
    /// The Region changed.
    pub region: String,
    /// The criteria set.
    pub plan: AllowedImagesPlan,
    /// The state before.
    pub state_before: String,
    /// The state now: `audit-mode` (launches are logged, never refused, until
    /// a person enables it after reading what audit mode reported).
    pub state: String,
}

/// Sets EC2's Allowed AMIs criteria from the policy and turns audit mode
/// on. Refuses when the setting is already enabled: new criteria there
/// would refuse launches before anyone saw them in audit mode.
pub async fn fix_allowed_images(responder: &Responder) -> Result<AllowedImagesFix> {
    let plan = allowed_images_plan(&responder.policy.approved_images)?;
    let ec2 = &responder.clients.ec2;
    let current = ec2
        .get_allowed_images_settings()
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("GetAllowedImagesSettings", None, &e))?;
    let before = current.state().unwrap_or("disabled").to_owned();
    if before == "enabled" {
        return Err(PlaybookError::InvalidRequest(
            "Allowed AMIs is already enabled: change its criteria by hand, after trying them in audit mode".into(),
        ));
    }
    let mut criterion = aws_sdk_ec2::types::ImageCriterionRequest::builder()
        .set_image_providers(Some(plan.image_providers.clone()));
    if !plan.image_names.is_empty() {
        criterion = criterion.set_image_names(Some(plan.image_names.clone()));
    }
    ec2.replace_image_criteria_in_allowed_images_settings()
        .image_criteria(criterion.build())
        .send()
        .await
        .map_err(|e| {
            PlaybookError::from_sdk("ReplaceImageCriteriaInAllowedImagesSettings", None, &e)
        })?;
    let enabled = ec2
        .enable_allowed_images_settings()
        .allowed_images_settings_state(
            aws_sdk_ec2::types::AllowedImagesSettingsEnabledState::AuditMode,
        )
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("EnableAllowedImagesSettings", None, &e))?;
    Ok(AllowedImagesFix {
        region: responder.region.clone(),
        plan,
        state_before: before,
        state: enabled
            .allowed_images_settings_state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "audit-mode".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trail(arn: &str, home: &str, multi: bool, logging: bool, validation: bool) -> TrailSeen {
        TrailSeen {
            arn: arn.into(),
            home_region: home.into(),
            multi_region: multi,
            logging,
            validation,
            bucket: Some("trail-logs".into()),
        }
    }

    #[test]
    fn a_region_without_a_logging_trail_fails_by_name() {
        let regions = vec!["eu-west-1".to_owned(), "us-east-1".to_owned()];
        let checks = judge_trails(&[trail("a", "us-east-1", false, true, true)], &regions);
        assert_eq!(checks[0].verdict, Verdict::Fail, "no multi-Region trail");
        let uncovered: Vec<_> = checks
            .iter()
            .filter(|c| c.check == "cloudtrail.region")
            .map(|c| c.region.clone().unwrap())
            .collect();
        assert_eq!(uncovered, vec!["eu-west-1".to_owned()]);

        // A multi-Region trail that stopped logging covers nothing.
        let stopped = judge_trails(&[trail("b", "us-east-1", true, false, true)], &regions);
        assert_eq!(
            stopped
                .iter()
                .filter(|c| c.verdict == Verdict::Fail)
                .count(),
            3
        );

        let good = judge_trails(&[trail("c", "us-east-1", true, true, true)], &regions);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].verdict, Verdict::Pass);
        assert!(good[0].fix.is_empty());

        let unvalidated = judge_trails(&[trail("d", "us-east-1", true, true, false)], &regions);
        assert_eq!(unvalidated[0].verdict, Verdict::Fail);
        assert!(unvalidated[0].fix.contains("--enable-log-file-validation"));
    }

    #[test]
    fn only_a_deny_for_everyone_but_one_arn_limits_signing() {
        let stack = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Sign", "Resource": "*",
             "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::1:role/stack/custody-signer/*"}}}
        ]});
        assert_eq!(
            sign_limited_to(&stack, "1").as_deref(),
            Some("arn:aws:iam::1:role/stack/custody-signer/*")
        );
        // The account's root may delegate Sign to anyone: nothing limits it.
        let open = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*", "Resource": "*"}
        ]});
        assert_eq!(sign_limited_to(&open, "1"), None);
        // An Allow of Sign to one role is not a limit: root's Allow still delegates.
        let allow_only = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/seal"}, "Action": "kms:Sign", "Resource": "*"}});
        assert_eq!(sign_limited_to(&allow_only, "1"), None);
        // A Deny of something else is not a limit on signing.
        let other = json!({"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": "x"}}}]});
        assert_eq!(sign_limited_to(&other, "1"), None);
        // A Deny that spares everyone, another account, or that only applies
        // under a second condition limits nothing.
        let deny = |condition: serde_json::Value| {
            json!({"Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Sign",
                "Resource": "*", "Condition": condition}]})
        };
        for loose in [
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::1:*"}}),
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/stack/*"}}),
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::2:role/stack/*"}}),
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::1:role/*"}}),
            json!({"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::1:role/a/*", "arn:aws:iam::1:role/b/*"]}}),
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::1:role/stack/*"},
                   "Bool": {"aws:ViaAWSService": "true"}}),
        ] {
            assert_eq!(sign_limited_to(&deny(loose.clone()), "1"), None, "{loose}");
        }
    }

    #[test]
    fn snapshot_sharing_and_allowed_images_say_what_is_open() {
        assert_eq!(
            judge_snapshot_public_access("block-all-sharing", "r").verdict,
            Verdict::Pass
        );
        assert_eq!(
            judge_snapshot_public_access("block-new-sharing", "r").verdict,
            Verdict::Warn
        );
        let open = judge_snapshot_public_access("unblocked", "r");
        assert_eq!(open.verdict, Verdict::Fail);
        assert!(open.fix.contains("block-all-sharing"));
        let criteria = vec!["providers amazon; any name".to_owned()];
        let enabled = judge_allowed_images("enabled", &criteria, "r");
        assert_eq!(enabled.verdict, Verdict::Pass);
        assert!(
            enabled.found.contains("providers amazon"),
            "{}",
            enabled.found
        );
        let audit = judge_allowed_images("audit-mode", &criteria, "r");
        assert_eq!(audit.verdict, Verdict::Warn);
        assert!(audit.found.contains("not refused"));
        assert_eq!(
            judge_allowed_images("disabled", &[], "r").verdict,
            Verdict::Warn
        );
        // Enabled with a criterion naming no provider: anyone's image named so passes.
        let open = vec!["any provider; names golden-*".to_owned()];
        let judged = judge_allowed_images("enabled", &open, "r");
        assert_eq!(judged.verdict, Verdict::Warn);
        assert!(
            judged.found.contains("names no image provider"),
            "{}",
            judged.found
        );
    }

    #[test]
    fn an_old_foreign_or_unavailable_golden_ami_fails_with_each_reason() {
        let day = 86_400;
        let ok = judge_golden_ami("ami-1", "available", "111", "111", Some(10 * day), 90);
        assert_eq!(ok.verdict, Verdict::Pass);
        let bad = judge_golden_ami("ami-1", "deregistered", "222", "111", Some(200 * day), 90);
        assert_eq!(bad.verdict, Verdict::Fail);
        for part in [
            "deregistered",
            "owned by 222",
            "200 days old",
            "goldenAmiMaxAgeDays 90",
        ] {
            assert!(bad.found.contains(part), "{part}: {}", bad.found);
        }
        // Older than the limit by a second is older.
        let edge = judge_golden_ami("ami-1", "available", "111", "111", Some(90 * day + 1), 90);
        assert_eq!(edge.verdict, Verdict::Fail);
        assert_eq!(
            judge_golden_ami("ami-1", "available", "111", "111", Some(90 * day), 90).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn the_policy_becomes_one_criterion_and_what_it_cannot_say_is_named() {
        use crate::case::policy::{ApprovedImages, TagRule};
        let rules = ApprovedImages {
            owners: vec!["111122223333".into(), "amazon".into()],
            name_patterns: vec!["golden-*".into()],
            image_ids: vec!["ami-0123".into()],
            tag: Some(TagRule {
                key: "approved".into(),
                values: vec!["true".into()],
            }),
            ..ApprovedImages::default()
        };
        let plan = allowed_images_plan(&rules).unwrap();
        assert_eq!(plan.image_providers, vec!["111122223333", "amazon"]);
        assert_eq!(plan.image_names, vec!["golden-*"]);
        assert_eq!(plan.not_expressible.len(), 2, "{:?}", plan.not_expressible);
        let no_owner = ApprovedImages {
            image_ids: vec!["ami-0123".into()],
            ..ApprovedImages::default()
        };
        assert_eq!(
            allowed_images_plan(&no_owner).unwrap_err().error_type(),
            "InvalidPolicy"
        );
        // `self` is never an owner check-ami matches: not widened to the account.
        let alias = ApprovedImages {
            owners: vec!["self".into()],
            ..ApprovedImages::default()
        };
        assert!(allowed_images_plan(&alias).is_err());
    }

    #[test]
    fn an_evidence_policy_must_deny_deleting_versions_to_everyone() {
        let tls = json!({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
        let deletes = json!({"Effect": "Deny", "Principal": "*",
            "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*"});
        let stack = json!({"Statement": [tls.clone(), deletes.clone()]});
        assert_eq!(judge_evidence_policy(&stack).0, Verdict::Pass);
        assert_eq!(
            judge_evidence_policy(&json!({"Statement": [tls.clone()]})).0,
            Verdict::Fail
        );
        assert_eq!(
            judge_evidence_policy(&json!({"Statement": deletes})).0,
            Verdict::Warn
        );
        // A Deny of deletes that applies only under a condition is not one.
        let conditional = json!({"Statement": [tls, {"Effect": "Deny", "Principal": "*",
            "Action": "s3:DeleteObjectVersion", "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalAccount": "111122223333"}}}]});
        assert_eq!(judge_evidence_policy(&conditional).0, Verdict::Fail);
    }

    /// A trail or bucket name is the account's: in the SNS summary it is one
    /// value on its own line, never a line (or a heading) of the message.
    #[test]
    fn the_summary_lists_failures_then_warnings_and_no_name_starts_a_line() {
        let forged = "home\nFAILED\n- approval.topic: fine\u{202e}";
        let checks = vec![
            check("custody.key", None, Verdict::Pass, "limited".into(), "x"),
            check(
                "cloudtrail.bucket",
                None,
                Verdict::Fail,
                format!("bucket {forged} is public"),
                "block public access on it",
            ),
            check(
                "ssm.endpoints",
                Some("eu-west-1"),
                Verdict::Warn,
                "x".repeat(5000),
                "add the endpoints",
            ),
        ];
        let readiness = Readiness {
            account: "123456789012".into(),
            home_region: "us-east-1".into(),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            checks,
            failed: 1,
            warned: 1,
            passed: 1,
        };
        let (subject, body) = summary(&readiness);
        assert_eq!(
            subject,
            "ec2-forensics readiness: NOT ready (1 failed, 1 warned)"
        );
        assert!(subject.is_ascii() && subject.len() < 100);
        let lines: Vec<&str> = body.lines().collect();
        let failed = lines
            .iter()
            .position(|l| *l == "FAILED")
            .expect("a FAILED heading");
        let warned = lines
            .iter()
            .position(|l| *l == "WARNED")
            .expect("a WARNED heading");
        assert!(failed < warned, "{body}");
        assert_eq!(
            lines.iter().filter(|l| **l == "FAILED").count(),
            1,
            "the forged heading stays inside its line: {body}"
        );
        assert!(!body.contains('\u{202e}'), "{body}");
        assert!(lines[failed + 1].starts_with("- cloudtrail.bucket: bucket home\\u{a}FAILED"));
        assert_eq!(lines[failed + 2], "  fix: block public access on it");
        assert!(lines[warned + 1].starts_with("- ssm.endpoints [eu-west-1]: "));
        assert!(
            lines[warned + 1].len() < SUMMARY_TEXT_LIMIT + 50,
            "a long finding is cut"
        );
        assert!(!body.contains("custody.key"), "a pass is only counted");
        assert!(body.contains("1 failed, 1 warned, 1 passed"));

        let ready = Readiness {
            checks: vec![],
            failed: 0,
            warned: 0,
            ..readiness
        };
        let (subject, body) = summary(&ready);
        assert_eq!(
            subject,
            "ec2-forensics readiness: ready (0 failed, 0 warned)"
        );
        assert!(!body.contains("FAILED") && !body.contains("WARNED"));
    }

    #[test]
    fn regions_are_all_or_names() {
        assert_eq!(Regions::parse("all").unwrap(), Regions::All);
        assert_eq!(
            Regions::parse("us-east-1, eu-west-1").unwrap(),
            Regions::Listed(vec!["us-east-1".into(), "eu-west-1".into()])
        );
        for bad in ["", "us east 1", "US-EAST-1", "../etc"] {
            assert!(Regions::parse(bad).is_err(), "{bad}");
        }
    }
}
