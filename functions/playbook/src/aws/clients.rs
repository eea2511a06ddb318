//! What every Lambda and the CLI build once at start: configuration and AWS clients.
//!
//! Endpoints follow the SDK's own rules: `AWS_ENDPOINT_URL` and the per-service
//! `AWS_ENDPOINT_URL_<SERVICE>` variables (this is how the local stack points
//! every client at the emulator); retries and deadlines are the responder's own
//! (see [`super::retry`]), whatever the environment says.

use std::sync::{Arc, OnceLock};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::ConnectorBuilder;
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpClient, SharedHttpClient};

use super::retry::{retry_config, timeout_config};
use crate::case::{Case, Policy};
use crate::error::{AwsCall, PlaybookError, Result};

/// One client per AWS service the playbook calls.
#[derive(Debug, Clone)]
pub struct Clients {
    /// CloudTrail: readiness reads the trails.
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    /// CloudWatch: the crypto-mining alarms kept in step with the instances.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// DynamoDB: the lease that keeps one open case per instance.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// EC2: instances, ENIs, security groups, volumes, snapshots.
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling: detach the suspect from its group.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// Classic load balancers.
    pub elb: aws_sdk_elasticloadbalancing::Client,
    /// Application and network load balancer target groups.
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// GuardDuty: readiness reads the detectors.
    pub guardduty: aws_sdk_guardduty::Client,
    /// IAM: the instance role's session revocation.
    pub iam: aws_sdk_iam::Client,
    /// KMS: volume keys, grants to the forensic account, the manifest signature.
    pub kms: aws_sdk_kms::Client,
    /// Route 53 Resolver: DNS Firewall blocks of a finding's domain.
    pub route53resolver: aws_sdk_route53resolver::Client,
    /// S3: the evidence store.
    pub s3: aws_sdk_s3::Client,
    /// Security Hub: the notes and workflow status of the findings behind a case.
    pub securityhub: aws_sdk_securityhub::Client,
    /// Step Functions: dispatch starts executions; the approval gate is answered.
    pub sfn: aws_sdk_sfn::Client,
    /// SNS: approval requests.
    pub sns: aws_sdk_sns::Client,
    /// SQS: readiness reads the dead-letter queue's depth.
    pub sqs: aws_sdk_sqs::Client,
    /// SSM: the policy parameter, and commands on the instance.
    pub ssm: aws_sdk_ssm::Client,
    /// STS: who the responder is.
    pub sts: aws_sdk_sts::Client,
}

impl Clients {
    /// Builds every client from one loaded SDK configuration, each in a
    /// retry partition of its own with no retry quota. The SDK's standard
    /// quota is shared by every client of the process (per service and
    /// Region): 500 tokens, 5 forgotten for good by each throttled retry. A
    /// bulk run meets EC2's request limits by design, and a Lambda
    /// environment serves invocation after invocation, so that quota would
    /// run dry and every later throttled call would fail at once, with no
    /// retry. The responder's own bounds (`retry::MAX_ATTEMPTS` and
    /// `retry::OPERATION_DEADLINE` per call) stop retries instead.
    pub fn new(sdk: &SdkConfig) -> Self {
        macro_rules! build {
            ($krate:ident) => {
                $krate::Client::from_conf(
                    $krate::config::Builder::from(sdk)
                        .retry_partition(
                            $krate::config::retry::RetryPartition::custom(concat!(
                                "ec2-forensics-",
                                stringify!($krate)
                            ))
                            .token_bucket($krate::config::retry::TokenBucket::unlimited())
                            .build(),
                        )
                        .build(),
                )
            };
        }
        Self {
            cloudtrail: build!(aws_sdk_cloudtrail),
            cloudwatch: build!(aws_sdk_cloudwatch),
            dynamodb: build!(aws_sdk_dynamodb),
            ec2: build!(aws_sdk_ec2),
            autoscaling: build!(aws_sdk_autoscaling),
            elb: build!(aws_sdk_elasticloadbalancing),
            elbv2: build!(aws_sdk_elasticloadbalancingv2),
            guardduty: build!(aws_sdk_guardduty),
            iam: build!(aws_sdk_iam),
            kms: build!(aws_sdk_kms),
            route53resolver: build!(aws_sdk_route53resolver),
            s3: build!(aws_sdk_s3),
            securityhub: build!(aws_sdk_securityhub),
            sfn: build!(aws_sdk_sfn),
            sns: build!(aws_sdk_sns),
            sqs: build!(aws_sdk_sqs),
            ssm: build!(aws_sdk_ssm),
            sts: build!(aws_sdk_sts),
        }
    }

    /// The same clients (endpoints, retries, deadlines, region) acting with
    /// other credentials: an assumed role in a workload account.
    pub fn with_credentials(&self, credentials: Credentials) -> Self {
        macro_rules! rebuild {
            ($krate:ident, $client:expr) => {
                $krate::Client::from_conf(
                    $client
                        .config()
                        .to_builder()
                        .credentials_provider(credentials.clone())
                        .build(),
                )
            };
        }
        Self {
            cloudtrail: rebuild!(aws_sdk_cloudtrail, self.cloudtrail),
            cloudwatch: rebuild!(aws_sdk_cloudwatch, self.cloudwatch),
            dynamodb: rebuild!(aws_sdk_dynamodb, self.dynamodb),
            ec2: rebuild!(aws_sdk_ec2, self.ec2),
            autoscaling: rebuild!(aws_sdk_autoscaling, self.autoscaling),
            elb: rebuild!(aws_sdk_elasticloadbalancing, self.elb),
            elbv2: rebuild!(aws_sdk_elasticloadbalancingv2, self.elbv2),
            guardduty: rebuild!(aws_sdk_guardduty, self.guardduty),
            iam: rebuild!(aws_sdk_iam, self.iam),
            kms: rebuild!(aws_sdk_kms, self.kms),
            route53resolver: rebuild!(aws_sdk_route53resolver, self.route53resolver),
            s3: rebuild!(aws_sdk_s3, self.s3),
            securityhub: rebuild!(aws_sdk_securityhub, self.securityhub),
            sfn: rebuild!(aws_sdk_sfn, self.sfn),
            sns: rebuild!(aws_sdk_sns, self.sns),
            sqs: rebuild!(aws_sdk_sqs, self.sqs),
            ssm: rebuild!(aws_sdk_ssm, self.ssm),
            sts: rebuild!(aws_sdk_sts, self.sts),
        }
    }
}

/// How long evidence objects are locked, and how (S3 Object Lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `COMPLIANCE` (no one can shorten it, not even root) or `GOVERNANCE`.
    pub mode: String,
    /// Days from upload.
    pub days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            mode: "COMPLIANCE".into(),
            days: 90,
        }
    }
}

/// The responder's configuration, from environment variables shared by the
/// Lambdas and the CLI (documented in the README).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `EVIDENCE_BUCKET`: the Object Lock bucket that keeps every artifact.
    pub evidence_bucket: Option<String>,
    /// `WORKLOAD_ROLE_NAME`: the role assumed in the finding's account; unset
    /// means single-account mode.
    pub workload_role_name: Option<String>,
    /// `FORENSIC_KMS_KEY`: the forensic account's key for the snapshot copies.
    pub forensic_kms_key: Option<String>,
    /// `SHARING_KMS_KEY`: a customer key in the workload account that
    /// re-encrypts snapshots of volumes under the AWS-managed key.
    pub sharing_kms_key: Option<String>,
    /// `CUSTODY_SIGNING_KEY`: the asymmetric key (ECC_NIST_P256) that signs manifests.
    pub custody_signing_key: Option<String>,
    /// `EVIDENCE_RETENTION_MODE` and `EVIDENCE_RETENTION_DAYS`.
    pub retention: Retention,
    /// `APPROVAL_TOPIC_ARN`: the SNS topic approval requests are published to.
    pub approval_topic_arn: Option<String>,
    /// `RUN_SCRIPT_DOCUMENT`: the SSM document that runs a shipped host script.
    pub run_script_document: Option<String>,
    /// `AVML_SHA256`: the SHA-256 the AVML binary in `tools/avml` must have.
    pub avml_sha256: Option<String>,
    /// `GOLDEN_AMI_PARAMETER`: the SSM parameter holding the workstation's AMI id.
    pub golden_ami_parameter: Option<String>,
    /// `FORENSIC_SUBNETS`: `zone=subnet,...`, the forensic subnet of each zone.
    pub forensic_subnets: Option<String>,
    /// `FORENSIC_SECURITY_GROUP`: the workstation's group.
    pub forensic_security_group: Option<String>,
    /// `FORENSIC_INSTANCE_PROFILE`: the workstation's instance profile (name or ARN).
    pub forensic_instance_profile: Option<String>,
    /// `FORENSIC_INSTANCE_TYPE`: the workstation's type (default m6i.large, Nitro).
    pub forensic_instance_type: Option<String>,
    /// `LEASE_TABLE`: the DynamoDB table that keeps one open case per instance.
    pub lease_table: Option<String>,
    /// `APPROVAL_MAC_KEY`: the HMAC key with which the approval function
    /// signs an answer and record-approval checks it.
    pub approval_mac_key: Option<String>,
    /// `DEAD_LETTER_QUEUE_URL`: the queue that keeps the events and scheduled
    /// runs a function failed on (readiness checks that it is empty).
    pub dead_letter_queue_url: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, if set);
    /// empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut retention = Retention::default();
        if let Some(mode) = get("EVIDENCE_RETENTION_MODE") {
            let mode = mode.to_ascii_uppercase();
            if mode != "COMPLIANCE" && mode != "GOVERNANCE" {
                return Err(PlaybookError::Configuration(format!(
                    "EVIDENCE_RETENTION_MODE is {mode}: COMPLIANCE or GOVERNANCE"
                )));
            }
            retention.mode = mode;
        }
        if let Some(days) = get("EVIDENCE_RETENTION_DAYS") {
            retention.days = days.parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                PlaybookError::Configuration(format!(
                    "EVIDENCE_RETENTION_DAYS is {days}: a whole number of days, at least 1"
                ))
            })?;
        }
        Ok(Config {
            evidence_bucket: get("EVIDENCE_BUCKET"),
            workload_role_name: get("WORKLOAD_ROLE_NAME"),
            forensic_kms_key: get("FORENSIC_KMS_KEY"),
            sharing_kms_key: get("SHARING_KMS_KEY"),
            custody_signing_key: get("CUSTODY_SIGNING_KEY"),
            retention,
            approval_topic_arn: get("APPROVAL_TOPIC_ARN"),
            run_script_document: get("RUN_SCRIPT_DOCUMENT"),
            avml_sha256: get("AVML_SHA256").map(|s| s.to_ascii_lowercase()),
            golden_ami_parameter: get("GOLDEN_AMI_PARAMETER"),
            forensic_subnets: get("FORENSIC_SUBNETS"),
            forensic_security_group: get("FORENSIC_SECURITY_GROUP"),
            forensic_instance_profile: get("FORENSIC_INSTANCE_PROFILE"),
            forensic_instance_type: get("FORENSIC_INSTANCE_TYPE"),
            lease_table: get("LEASE_TABLE"),
            approval_mac_key: get("APPROVAL_MAC_KEY"),
            dead_letter_queue_url: get("DEAD_LETTER_QUEUE_URL"),
        })
    }

    /// A setting a step cannot work without, or a typed error naming the variable.
    pub fn required<'a>(value: &'a Option<String>, variable: &str) -> Result<&'a str> {
        value
            .as_deref()
            .ok_or_else(|| PlaybookError::Configuration(format!("{variable} is not set")))
    }
}

/// The clients a step uses in the finding's (workload) account, and who they act as.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Clients in the workload account (the responder's own in single-account mode).
    pub clients: Clients,
    /// The identity the calls are made as: the assumed role's session ARN, whose
    /// session name carries the case id.
    pub actor: String,
    /// The workload account.
    pub account: String,
}

/// The role session name for a case: CloudTrail in the workload account ties
/// every call to the case by it. At most 64 of `[A-Za-z0-9+=,.@_-]`.
pub fn session_name(case_id: &str) -> String {
    let name: String = format!("ec2-forensics-{case_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.chars().take(64).collect()
}

/// Where the response policy comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySource {
    /// The built-in defaults.
    Default,
    /// A JSON file (local runs, the CLI).
    File(String),
    /// An SSM Parameter Store parameter (deployed stacks).
    Parameter(String),
}

impl PolicySource {
    /// `POLICY_FILE`, else `POLICY_PARAMETER`, else the defaults.
    pub fn from_env() -> Self {
        if let Ok(path) = std::env::var("POLICY_FILE") {
            if !path.is_empty() {
                return Self::File(path);
            }
        }
        match std::env::var("POLICY_PARAMETER") {
            Ok(name) if !name.is_empty() => Self::Parameter(name),
            _ => Self::Default,
        }
    }

    /// Reads and validates the policy.
    pub async fn load(&self, ssm: &aws_sdk_ssm::Client) -> Result<Policy> {
        match self {
            Self::Default => Ok(Policy::default()),
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    PlaybookError::Configuration(format!("cannot read policy file {path}: {e}"))
                })?;
                Policy::from_json(&text)
            }
            Self::Parameter(name) => {
                let out = ssm
                    .get_parameter()
                    .name(name)
                    .send()
                    .await
                    .map_err(|e| PlaybookError::from_sdk("GetParameter", None, &e))?;
                let text = out.parameter().and_then(|p| p.value()).ok_or_else(|| {
                    PlaybookError::Configuration(format!("policy parameter {name} has no value"))
                })?;
                Policy::from_json(text)
            }
        }
    }
}

/// The identity the responder acts as, recorded in every custody entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The caller ARN (the Lambda's role session, or the responder's own user).
    pub actor: String,
    /// The account the responder acts in.
    pub account: String,
}

/// Everything a step needs, built once per process.
#[derive(Debug, Clone)]
pub struct Responder {
    /// AWS clients.
    pub clients: Clients,
    /// The region the responder runs in.
    pub region: String,
    /// Who the responder is.
    pub identity: Identity,
    /// Accounts the responder may act in (`ALLOWED_ACCOUNTS`, comma-separated;
    /// by default only its own).
    pub allowed_accounts: Vec<String>,
    /// The response policy.
    pub policy: Policy,
    /// The state machine dispatch starts (`STATE_MACHINE_ARN`).
    pub state_machine_arn: Option<String>,
    /// The bulk state machine (`BULK_STATE_MACHINE_ARN`): its runs' approval
    /// gates are answered like a case's.
    pub bulk_state_machine_arn: Option<String>,
    /// Evidence store, keys and the workload role.
    pub config: Config,
}

impl Responder {
    /// Loads the SDK configuration and everything else from the environment,
    /// and asks STS who the responder is.
    pub async fn from_env() -> Result<Responder> {
        Self::load(None).await
    }

    /// Like [`Responder::from_env`], with the region given (the CLI's `--region`).
    /// Who the responder is and its policy are read together.
    pub async fn load(region: Option<String>) -> Result<Responder> {
        let (clients, region) = connect(region).await?;
        Self::complete(clients, region, Config::from_env()?).await
    }

    /// Completes a responder from clients already built: who it is and its
    /// policy, read together (the only network calls of set-up).
    pub async fn complete(clients: Clients, region: String, config: Config) -> Result<Responder> {
        let source = PolicySource::from_env();
        let (identity, policy) = tokio::join!(identify(&clients.sts), source.load(&clients.ssm));
        let mut responder = Self::assemble(clients, region, identity?, policy?)?;
        responder.config = config;
        Ok(responder)
    }

    /// A responder from parts already at hand: configuration from the environment.
    pub fn assemble(
        clients: Clients,
        region: String,
        identity: Identity,
        policy: Policy,
    ) -> Result<Responder> {
        let allowed_accounts = match std::env::var("ALLOWED_ACCOUNTS") {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            _ => vec![identity.account.clone()],
        };
        Ok(Responder {
            clients,
            region,
            identity,
            allowed_accounts,
            policy,
            state_machine_arn: std::env::var("STATE_MACHINE_ARN")
                .ok()
                .filter(|a| !a.is_empty()),
            bulk_state_machine_arn: std::env::var("BULK_STATE_MACHINE_ARN")
                .ok()
                .filter(|a| !a.is_empty()),
            config: Config::from_env()?,
        })
    }

    /// The state machine whose execution `id` names: a bulk run's
    /// (`bulk-…`, see `BulkRequest::bulk_id`) or a case's.
    pub fn state_machine_of(&self, id: &str) -> Result<&str> {
        let (arn, variable) = if id.starts_with(crate::case::bulk::BULK_ID_PREFIX) {
            (&self.bulk_state_machine_arn, "BULK_STATE_MACHINE_ARN")
        } else {
            (&self.state_machine_arn, "STATE_MACHINE_ARN")
        };
        arn.as_deref().ok_or_else(|| {
            PlaybookError::Configuration(format!(
                "{variable} is not set: {id}'s execution is in that state machine"
            ))
        })
    }

    /// Whether the responder acts in workload accounts through an assumed role.
    pub fn is_multi_account(&self) -> bool {
        self.config.workload_role_name.is_some()
    }

    /// The clients for the case's workload account: the role
    /// `WORKLOAD_ROLE_NAME` assumed there, with the case id in the session
    /// name; the responder's own clients in single-account mode.
    pub async fn workload(&self, case: &Case) -> Result<Workload> {
        self.workload_for(case.incident.account.as_deref(), &case.case_id)
            .await
    }

    /// Like [`Responder::workload`], for an account and a case id.
    pub async fn workload_for(&self, account: Option<&str>, case_id: &str) -> Result<Workload> {
        let account = account.unwrap_or(&self.identity.account).to_owned();
        if !self.allowed_accounts.contains(&account) {
            return Err(PlaybookError::WrongAccount {
                expected: self.allowed_accounts.join(", "),
                found: account,
            });
        }
        let Some(role_name) = &self.config.workload_role_name else {
            if account != self.identity.account {
                return Err(PlaybookError::Configuration(format!(
                    "the case is in account {account}, but WORKLOAD_ROLE_NAME is not set \
                     (single-account mode acts in {} only)",
                    self.identity.account
                )));
            }
            return Ok(Workload {
                clients: self.clients.clone(),
                actor: self.identity.actor.clone(),
                account,
            });
        };
        let role_arn = format!("arn:aws:iam::{account}:role/{role_name}");
        let out = self
            .clients
            .sts
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name(session_name(case_id))
            .send()
            .await
            .aws("AssumeRole", None)?;
        let (Some(credentials), Some(user)) = (out.credentials(), out.assumed_role_user()) else {
            return Err(PlaybookError::AwsService {
                operation: "AssumeRole".into(),
                code: "IncompleteResponse".into(),
                message: format!("{role_arn}: no credentials in the answer"),
            });
        };
        let expiry = std::time::SystemTime::try_from(*credentials.expiration()).ok();
        let credentials = Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            expiry,
            "ec2-forensics-workload-role",
        );
        Ok(Workload {
            clients: self.clients.with_credentials(credentials),
            actor: user.arn().to_owned(),
            account,
        })
    }

    /// Fails with a typed error when the incident is outside the responder's
    /// account or region: acting on the wrong estate is worse than not acting.
    pub fn check_scope(&self, account: Option<&str>, region: &str) -> Result<()> {
        if region != self.region {
            return Err(PlaybookError::WrongRegion {
                expected: self.region.clone(),
                found: region.to_owned(),
            });
        }
        match account {
            Some(account) if !self.allowed_accounts.iter().any(|a| a == account) => {
                Err(PlaybookError::WrongAccount {
                    expected: self.allowed_accounts.join(", "),
                    found: account.to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Loads the SDK configuration (the responder's retries and deadlines
/// included) and builds the clients; makes no AWS call.
pub async fn connect(region: Option<String>) -> Result<(Clients, String)> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client_on_first_use())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(ToString::to_string).ok_or_else(|| {
        PlaybookError::Configuration("no AWS region is configured (AWS_REGION)".into())
    })?;
    Ok((Clients::new(&sdk), region))
}

/// The SDK's default HTTPS client (rustls with aws-lc, the proxy from the
/// environment), created by the first request instead of at start. Creating it
/// loads the system's trusted certificates, which was most of a cold start
/// (`make bench`); a Lambda reaches its Runtime API first and pays for it in
/// the invocation that needs it.
fn https_client_on_first_use() -> SharedHttpClient {
    let built: Arc<OnceLock<SharedHttpClient>> = Arc::default();
    http_client_fn(move |settings, components| {
        built
            .get_or_init(|| {
                aws_smithy_http_client::Builder::new().build_with_connector_fn(
                    |settings, components| {
                        let mut connector = ConnectorBuilder::default()
                            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
                        connector.set_connector_settings(settings.cloned());
                        if let Some(components) = components {
                            connector.set_sleep_impl(components.sleep_impl());
                        }
                        connector.set_proxy_config(Some(ProxyConfig::from_env()));
                        connector.build()
                    },
                )
            })
            .http_connector(settings, components)
    })
}

/// Asks STS who the responder is.
pub async fn identify(sts: &aws_sdk_sts::Client) -> Result<Identity> {
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| PlaybookError::from_sdk("GetCallerIdentity", None, &e))?;
    Ok(Identity {
        actor: me.arn().unwrap_or("unknown").to_owned(),
        account: me.account().unwrap_or_default().to_owned(),
    })
}

/// Sets up JSON logs for a Lambda (plain text when `LOG_FORMAT=text`), level from `RUST_LOG`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("text") {
        builder.with_ansi(false).init();
    } else {
        builder.json().init();
    }
}
