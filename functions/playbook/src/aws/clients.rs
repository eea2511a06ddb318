//! What every Lambda and the CLI build once at start: configuration and AWS clients.
//!
//! Endpoints follow the SDK's own rules: `AWS_ENDPOINT_URL` and the per-service
//! `AWS_ENDPOINT_URL_<SERVICE>` variables (this is how the local stack points
//! every client at the emulator); retries and deadlines are the responder's own
//! (see [`super::retry`]), whatever the environment says.

use aws_config::{BehaviorVersion, SdkConfig};

use super::retry::{retry_config, timeout_config};
use crate::case::Policy;
use crate::error::{PlaybookError, Result};

/// One client per AWS service the playbook calls.
#[derive(Debug, Clone)]
pub struct Clients {
    /// EC2: instances, ENIs, security groups, volumes, snapshots.
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling: detach the suspect from its group.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// Classic load balancers.
    pub elb: aws_sdk_elasticloadbalancing::Client,
    /// Application and network load balancer target groups.
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    /// IAM: the instance role's session revocation.
    pub iam: aws_sdk_iam::Client,
    /// Route 53 Resolver: DNS Firewall blocks of a finding's domain.
    pub route53resolver: aws_sdk_route53resolver::Client,
    /// Step Functions: dispatch starts executions.
    pub sfn: aws_sdk_sfn::Client,
    /// SSM: the policy parameter, and commands on the instance.
    pub ssm: aws_sdk_ssm::Client,
    /// STS: who the responder is.
    pub sts: aws_sdk_sts::Client,
}

impl Clients {
    /// Builds every client from one loaded SDK configuration.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancing::Client::new(sdk),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            route53resolver: aws_sdk_route53resolver::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
        }
    }
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
        let source = PolicySource::from_env();
        let (identity, policy) = tokio::join!(identify(&clients.sts), source.load(&clients.ssm));
        Ok(Self::assemble(clients, region, identity?, policy?))
    }

    /// A responder from parts already at hand: configuration from the environment.
    pub fn assemble(
        clients: Clients,
        region: String,
        identity: Identity,
        policy: Policy,
    ) -> Responder {
        let allowed_accounts = match std::env::var("ALLOWED_ACCOUNTS") {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            _ => vec![identity.account.clone()],
        };
        Responder {
            clients,
            region,
            identity,
            allowed_accounts,
            policy,
            state_machine_arn: std::env::var("STATE_MACHINE_ARN")
                .ok()
                .filter(|a| !a.is_empty()),
        }
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
