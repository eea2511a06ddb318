//! Test harness: emulators started by the test itself, on 127.0.0.1.
//!
//! - [`Moto`]: a moto server on a free port, killed when dropped; [`Moto::seed`]
//!   runs `infra/local/seed.py` (the same seed the demo uses) and returns the ids.
//! - [`LocalStack`]: moto plus `cargo lambda watch` through `infra/local/stack.sh`,
//!   and [`LocalStack::run`] executes `statemachine/forensics.asl.json` with the
//!   local runner, every Task invoking the real Lambda.

pub mod observe;
pub mod patterns;
pub mod template;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use playbook::aws::retry::{retry_config, timeout_config};
use playbook::aws::{Clients, Config, Identity};
use playbook::policy::Policy;
use playbook::Responder;
use serde::Deserialize;
use serde_json::Value;

/// The account moto reports for the dummy credentials.
pub const ACCOUNT: &str = "123456789012";
/// The region every test estate lives in.
pub const REGION: &str = "us-east-1";

/// Why a case is not contained, for an assertion's message: the summary, then
/// per instance its warnings and every action that failed.
/// Fails the test unless `case` is contained, saying why it is not.
#[track_caller]
pub fn assert_contained(case: &playbook::case::Case) {
    assert!(case.is_contained(), "{}", why_not_contained(case));
}

pub fn why_not_contained(case: &playbook::case::Case) -> String {
    let mut why = format!("{:?}\nerrors: {:?}", case.containment, case.errors);
    for isolation in &case.isolation {
        let failed: Vec<_> = isolation
            .actions
            .iter()
            .filter(|a| a.outcome == playbook::case::Outcome::Failed)
            .collect();
        why.push_str(&format!(
            "\n{} complete={} warnings={:?} failed={:?}",
            isolation.instance_id, isolation.complete, isolation.warnings, failed
        ));
    }
    why
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

fn venv_tool(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` (or `make test`, which sets up first)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether the server on `port` answers moto's own API (`/moto-api/data.json`).
fn answers_as_moto(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if stream
        .write_all(b"GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not start on port {port}");
}

/// A moto server of this test's own.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// `https://127.0.0.1:PORT`: its S3 over TLS, where every S3 request of
    /// the tests goes, so that pre-signed URLs are https as on AWS.
    pub s3_endpoint: String,
}

/// The folder of the bench CA and the emulator's certificate (made once by
/// `infra/local/moto_bench.py`; `stack.sh` uses the same).
pub fn bench_tls_dir() -> PathBuf {
    repo_root().join("target/bench-tls")
}

impl Moto {
    /// Starts a moto server (with the test bench's SSM agent and KMS
    /// signatures of a `DIGEST` as KMS makes them, `infra/local/moto_bench.py`)
    /// on a free port and waits until it answers.
    ///
    /// A port found free can be taken by another test's process before moto
    /// binds it (tests run side by side, each picking ports the same way):
    /// then moto exits and the port answers for someone else. So the server
    /// must answer moto's own `/moto-api/data.json`, else it starts again on
    /// other ports.
    pub fn start() -> Moto {
        for _ in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            let mut child = Command::new(venv_tool("python"))
                .arg(repo_root().join("infra/local/moto_bench.py"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("EC2_FORENSICS_BENCH_TLS_PORT", tls_port.to_string())
                .env("EC2_FORENSICS_BENCH_TLS_DIR", bench_tls_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the moto bench starts");
            wait_for_port(port, "the moto server");
            wait_for_port(tls_port, "the moto server's HTTPS S3");
            if answers_as_moto(port) && matches!(child.try_wait(), Ok(None)) {
                return Moto {
                    child,
                    endpoint: format!("http://127.0.0.1:{port}"),
                    s3_endpoint: format!("https://127.0.0.1:{tls_port}"),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no moto server of this test's own could start: its ports kept being taken");
    }

    /// Seeds an estate named `name` (see `infra/local/seed.py`).
    pub fn seed(&self, name: &str) -> Estate {
        seed(&self.endpoint, name)
    }

    /// Clients pointed at this server.
    pub async fn clients(&self) -> Clients {
        clients_with_s3(&self.endpoint, &self.s3_endpoint).await
    }

    /// A responder pointed at this server, acting as moto's default user.
    pub async fn responder(&self, policy: Policy) -> Responder {
        Responder {
            clients: self.clients().await,
            region: REGION.into(),
            identity: Identity {
                actor: format!("arn:aws:iam::{ACCOUNT}:user/test-responder"),
                account: ACCOUNT.into(),
            },
            allowed_accounts: vec![ACCOUNT.into()],
            policy,
            state_machine_arn: None,
            bulk_state_machine_arn: None,
            config: Config::default(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new security group named `name` in the VPC, as someone else would make it.
pub async fn create_group(clients: &Clients, vpc: &str, name: &str) -> String {
    let out = clients
        .ec2
        .create_security_group()
        .group_name(name)
        .description("made by the test")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap();
    out.group_id().unwrap().to_owned()
}

/// The SSM interface endpoints (ssm, ssmmessages, ec2messages) in the VPC; their group.
pub async fn ssm_endpoints(clients: &Clients, vpc: &str) -> String {
    let group = create_group(clients, vpc, "ssm-endpoints").await;
    for service in ["ssm", "ssmmessages", "ec2messages"] {
        clients
            .ec2
            .create_vpc_endpoint()
            .vpc_id(vpc)
            .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.us-east-1.{service}"))
            .security_group_ids(&group)
            .send()
            .await
            .unwrap();
    }
    group
}

/// The image the local stack's stand-in AVML (`infra/local/avml-stand-in.sh`)
/// writes: what a memory capture on the local stack must store.
pub fn stand_in_memory_image() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("stand-in-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("image.lime");
    let status = Command::new(repo_root().join("infra/local/avml-stand-in.sh"))
        .args(["acquire", "--compress", "--source", "/proc/kcore"])
        .arg(&file)
        .status()
        .expect("the stand-in AVML runs");
    assert!(status.success());
    let image = std::fs::read(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    image
}

/// Runs the seed script against `endpoint`.
pub fn seed(endpoint: &str, name: &str) -> Estate {
    let out = Command::new(venv_tool("python"))
        .arg(repo_root().join("infra/local/seed.py"))
        .args([endpoint, "--name", name, "--region", REGION])
        .output()
        .expect("seed.py runs");
    assert!(
        out.status.success(),
        "seed.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("seed.py prints the estate as JSON")
}

/// SDK clients for an emulator endpoint, S3 at `s3_endpoint` (the bench's
/// HTTPS, trusting only the bench CA), with dummy credentials and the
/// responder's own retries and deadlines.
pub async fn clients_with_s3(endpoint: &str, s3_endpoint: &str) -> Clients {
    use aws_smithy_http_client::tls;
    let ca = std::fs::read(bench_tls_dir().join("ca.pem")).expect("the bench CA");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(tls::TrustStore::empty().with_pem_certificate(ca))
                .build()
                .expect("a TLS context trusting the bench CA"),
        )
        .build_https();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .endpoint_url(endpoint)
        .http_client(http)
        .region(Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let mut clients = Clients::new(&sdk);
    clients.s3 = aws_sdk_s3::Client::from_conf(
        clients
            .s3
            .config()
            .to_builder()
            .endpoint_url(s3_endpoint)
            .build(),
    );
    clients
}

/// What `seed.py` made.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estate {
    /// The workload VPC.
    pub vpc_id: String,
    /// The suspect instance and what it is wired to.
    pub victim: Victim,
    /// An instance with one ENI and nothing else.
    pub bare: Bare,
    /// An instance sharing the victim's instance profile.
    pub peer: Bare,
    /// An instance in Standby in the victim's Auto Scaling group.
    pub standby: Bare,
    /// An instance with a second ENI from another VPC.
    pub dual_homed: DualHomed,
    /// The forensic side: keys and the evidence bucket.
    pub forensic: Forensic,
}

/// The forensic account's side of the estate.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forensic {
    /// The key for forensic copies and the evidence bucket.
    pub evidence_key_arn: String,
    /// The Object Lock bucket.
    pub evidence_bucket: String,
    /// The workload key that re-encrypts snapshots under the AWS managed key.
    pub sharing_key_arn: String,
    /// The custody signing key (ECC_NIST_P256).
    pub signing_key_arn: String,
    /// The SNS topic approval requests go to.
    pub approval_topic_arn: String,
    /// The SSM document that runs the shipped host scripts.
    pub run_script_document: String,
    /// SHA-256 of the AVML stand-in published at tools/avml.
    pub avml_sha256: String,
    /// The forensic subnet of each zone.
    pub forensic_subnets: std::collections::BTreeMap<String, String>,
    /// The workstation's security group.
    pub workstation_group_id: String,
    /// The workstation's instance profile.
    pub workstation_profile_arn: String,
    /// The golden AMI.
    pub golden_ami_id: String,
    /// The parameter that names it.
    pub golden_ami_parameter: String,
    /// The table of open cases per instance.
    pub lease_table: String,
    /// The HMAC key of approval answers.
    pub approval_mac_key_arn: String,
    /// The queue of events and scheduled runs a function failed on.
    pub dead_letter_queue_url: String,
}

impl Forensic {
    /// The responder's configuration for this estate, single-account mode.
    pub fn config(&self) -> Config {
        Config {
            evidence_bucket: Some(self.evidence_bucket.clone()),
            workload_role_name: None,
            forensic_kms_key: Some(self.evidence_key_arn.clone()),
            sharing_kms_key: Some(self.sharing_key_arn.clone()),
            custody_signing_key: Some(self.signing_key_arn.clone()),
            retention: playbook::aws::Retention {
                mode: "GOVERNANCE".into(),
                days: 1,
            },
            approval_topic_arn: Some(self.approval_topic_arn.clone()),
            run_script_document: Some(self.run_script_document.clone()),
            avml_sha256: Some(self.avml_sha256.clone()),
            golden_ami_parameter: Some(self.golden_ami_parameter.clone()),
            forensic_subnets: Some(self.subnets_setting()),
            forensic_security_group: Some(self.workstation_group_id.clone()),
            forensic_instance_profile: Some(self.workstation_profile_arn.clone()),
            forensic_instance_type: Some("m5.large".into()),
            lease_table: Some(self.lease_table.clone()),
            approval_mac_key: Some(self.approval_mac_key_arn.clone()),
            dead_letter_queue_url: Some(self.dead_letter_queue_url.clone()),
        }
    }

    /// The same configuration as environment variables (the CLI, the Lambdas).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("EVIDENCE_BUCKET", self.evidence_bucket.clone()),
            ("FORENSIC_KMS_KEY", self.evidence_key_arn.clone()),
            ("SHARING_KMS_KEY", self.sharing_key_arn.clone()),
            ("CUSTODY_SIGNING_KEY", self.signing_key_arn.clone()),
            ("EVIDENCE_RETENTION_MODE", "GOVERNANCE".into()),
            ("EVIDENCE_RETENTION_DAYS", "1".into()),
            ("APPROVAL_TOPIC_ARN", self.approval_topic_arn.clone()),
            ("RUN_SCRIPT_DOCUMENT", self.run_script_document.clone()),
            ("AVML_SHA256", self.avml_sha256.clone()),
            ("GOLDEN_AMI_PARAMETER", self.golden_ami_parameter.clone()),
            ("FORENSIC_SUBNETS", self.subnets_setting()),
            ("FORENSIC_SECURITY_GROUP", self.workstation_group_id.clone()),
            (
                "FORENSIC_INSTANCE_PROFILE",
                self.workstation_profile_arn.clone(),
            ),
            ("FORENSIC_INSTANCE_TYPE", "m5.large".into()),
            ("LEASE_TABLE", self.lease_table.clone()),
            ("APPROVAL_MAC_KEY", self.approval_mac_key_arn.clone()),
            ("DEAD_LETTER_QUEUE_URL", self.dead_letter_queue_url.clone()),
        ]
    }

    /// `FORENSIC_SUBNETS` for these subnets.
    pub fn subnets_setting(&self) -> String {
        self.forensic_subnets
            .iter()
            .map(|(zone, subnet)| format!("{zone}={subnet}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An instance whose second ENI lives in another VPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DualHomed {
    /// Instance id.
    pub instance_id: String,
    /// The second ENI's VPC.
    pub second_vpc_id: String,
    /// The second ENI.
    pub second_network_interface_id: String,
}

impl Estate {
    /// The bare instance's one security group (the victim's admin group).
    pub fn bare_groups(&self) -> Vec<String> {
        vec![self.victim.security_group_ids[1].clone()]
    }
}

/// The seeded suspect.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Victim {
    /// Instance id.
    pub instance_id: String,
    /// ENIs by device index.
    pub network_interface_ids: Vec<String>,
    /// The group of ENI 0 and the group of ENI 1.
    pub security_group_ids: Vec<String>,
    /// The EIP on ENI 0.
    pub elastic_ip: ElasticIp,
    /// Its three volumes: customer key, AWS managed key, unencrypted.
    pub volume_ids: Vec<String>,
    /// Instance profile.
    pub instance_profile_arn: String,
    /// Role in the profile.
    pub role_name: String,
    /// Its Auto Scaling group.
    pub auto_scaling_group: String,
    /// Two target groups with the registered port.
    pub target_groups: Vec<TargetGroup>,
    /// An IP-type target group holding the victim's primary private IP.
    pub ip_target_group: IpTargetGroup,
    /// Classic ELB name.
    pub classic_load_balancer: String,
    /// The customer managed KMS key of its root volume.
    pub kms_key_arn: String,
    /// The AWS managed key (`aws/ebs`) of its data volume.
    pub aws_managed_key_arn: String,
}

/// An Elastic IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElasticIp {
    /// Allocation id.
    pub allocation_id: String,
    /// Address.
    pub public_ip: String,
}

/// A target group registration.
#[derive(Debug, Clone, Deserialize)]
pub struct TargetGroup {
    /// ARN.
    pub arn: String,
    /// Port.
    pub port: i32,
}

/// An IP-type target group registration.
#[derive(Debug, Clone, Deserialize)]
pub struct IpTargetGroup {
    /// ARN.
    pub arn: String,
    /// Port.
    pub port: i32,
    /// The registered address.
    pub ip: String,
}

/// An instance with little around it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bare {
    /// Instance id.
    pub instance_id: String,
}

/// An example event from `events/`, with its instance id replaced.
pub fn event_for(file: &str, instance_id: &str) -> Value {
    let path = repo_root().join("events").join(file);
    let text = std::fs::read_to_string(&path).expect("example event exists");
    text.replace("i-0a1b2c3d4e5f60718", instance_id)
        .parse::<Value>()
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The CLI binary `bin` (a test's `CARGO_BIN_EXE_...`) against `moto`, with
/// `estate`'s forensic side as its configuration and dummy credentials:
/// single-account mode, no policy but the defaults.
pub fn cli_against(bin: &str, moto: &Moto, estate: &Estate) -> Command {
    let place = [
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        ("AWS_ENDPOINT_URL".to_owned(), moto.endpoint.clone()),
        // S3 over TLS, as the Lambdas have it: pre-signed URLs are https.
        ("AWS_ENDPOINT_URL_S3".to_owned(), moto.s3_endpoint.clone()),
        (
            "SSL_CERT_FILE".to_owned(),
            bench_tls_dir().join("ca.pem").display().to_string(),
        ),
    ];
    let forensic = estate
        .forensic
        .env()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value));
    cli_with(bin, place.into_iter().chain(forensic))
}

/// The CLI `bin` with the test credentials, no instance metadata, none of the
/// caller's own policy or workload settings, and then `env` (later values win).
pub fn cli_with(bin: &str, env: impl IntoIterator<Item = (String, String)>) -> Command {
    let mut command = Command::new(bin);
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("WORKLOAD_ROLE_NAME")
        .env_remove("POLICY_FILE")
        .env_remove("POLICY_PARAMETER");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A responder on `moto` configured with `estate`'s forensic side, and a
/// case opened on its victim by a dry-run containment (the Case, nothing
/// changed), for tests of what comes after.
pub async fn dry_run_case(
    moto: &Moto,
    estate: &Estate,
    reason: &str,
) -> (playbook::Responder, playbook::Case) {
    let mut responder = moto.responder(Policy::default()).await;
    responder.config = estate.forensic.config();
    let case = playbook::steps::contain::contain_by_hand_with(
        responder.clients.clone(),
        REGION.into(),
        playbook::steps::contain::ByHand {
            region: None,
            instance_id: estate.victim.instance_id.clone(),
            reason: reason.into(),
            dry_run: true,
            policy: Some(Policy::default()),
        },
    )
    .await
    .expect("a dry-run containment opens a case");
    (responder, case)
}

/// A Linux image the emulator can launch (moto lists Windows images too).
pub async fn linux_image(clients: &Clients) -> String {
    clients
        .ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("images")
        .images()
        .iter()
        .find(|i| i.platform().is_none())
        .and_then(|i| i.image_id())
        .expect("a Linux image")
        .to_owned()
}

/// A new VPC `10.{octet}.0.0/16` with `count` subnets `10.{octet}.N.0/24`
/// spread over the Region's zones a, b and c: the VPC and its subnets.
pub async fn vpc_with_subnets(clients: &Clients, octet: u8, count: usize) -> (String, Vec<String>) {
    let ec2 = &clients.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("10.{octet}.0.0/16"))
        .send()
        .await
        .expect("vpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let mut subnets = Vec::new();
    for n in 0..count {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.{octet}.{n}.0/24"))
            .availability_zone(format!("{REGION}{}", ["a", "b", "c"][n % 3]))
            .send()
            .await
            .expect("subnet");
        subnets.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_owned(),
        );
    }
    (vpc, subnets)
}

/// Launches `count` instances of a Linux image into `subnet` with `tags`
/// (termination protection on when `protected`): each one's id and root
/// volume.
pub async fn launch_into(
    clients: &Clients,
    subnet: &str,
    count: i32,
    tags: &[(&str, &str)],
    protected: bool,
) -> Vec<(String, String)> {
    use aws_sdk_ec2::types::{
        InstanceNetworkInterfaceSpecification, ResourceType, Tag, TagSpecification,
    };
    let mut launch = clients
        .ec2
        .run_instances()
        .image_id(linux_image(clients).await)
        .instance_type("t3.micro".into())
        .min_count(count)
        .max_count(count)
        .disable_api_termination(protected)
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(subnet)
                .build(),
        );
    if !tags.is_empty() {
        launch = launch.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .build(),
        );
    }
    let out = launch.send().await.expect("instances launched");
    out.instances()
        .iter()
        .map(|i| {
            let root = i
                .block_device_mappings()
                .iter()
                .find_map(|m| m.ebs().and_then(|e| e.volume_id()))
                .unwrap_or_default();
            (i.instance_id().expect("an id").to_owned(), root.to_owned())
        })
        .collect()
}

/// The network ACL `subnet` is associated with now, and the association's id.
pub async fn subnet_acl(clients: &Clients, subnet: &str) -> (String, String) {
    let acls = clients
        .ec2
        .describe_network_acls()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("association.subnet-id")
                .values(subnet)
                .build(),
        )
        .send()
        .await
        .expect("the subnet's ACL");
    acls.network_acls()
        .iter()
        .find_map(|acl| {
            let association = acl
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet))?;
            Some((
                acl.network_acl_id()?.to_owned(),
                association.network_acl_association_id()?.to_owned(),
            ))
        })
        .expect("every subnet has an ACL")
}

/// The CLI `bin` against `stack`, with `who`'s credentials (an approver's)
/// over the stack's environment; its output.
pub fn cli_as(
    bin: &str,
    stack: &LocalStack,
    who: &std::collections::BTreeMap<String, String>,
    args: &[&str],
) -> std::process::Output {
    cli_with(bin, stack.stack_env().into_iter().chain(who.clone()))
        .args(args)
        .output()
        .expect("the CLI runs")
}

/// The GuardDuty crypto-mining example about `instance_id`, as a finding of its
/// own (`id`): a different finding id is a different case.
pub fn guardduty_finding(instance_id: &str, id: &str) -> Value {
    let mut event = event_for("guardduty-crypto-mining-dns.json", instance_id);
    event["detail"]["id"] = id.into();
    event["detail"]["arn"] =
        format!("arn:aws:guardduty:{REGION}:{ACCOUNT}:detector/d1/finding/{id}").into();
    event
}

/// The instance's state name (`running`, `shutting-down`...), as EC2 reads it now.
pub async fn instance_state(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> String {
    ec2.describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .expect("DescribeInstances")
        .reservations()[0]
        .instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default()
}

/// Whether the instance has termination protection, as EC2 reads it now.
pub async fn termination_protected(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> bool {
    ec2.describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .expect("DescribeInstanceAttribute")
        .disable_api_termination()
        .and_then(|v| v.value())
        .unwrap_or(false)
}

/// moto, `cargo lambda watch` and the local Step Functions API, started by
/// `infra/local/stack.sh`.
pub struct LocalStack {
    state: tempdir::Dir,
    /// The emulator.
    pub moto_endpoint: String,
    /// Its S3 over HTTPS.
    pub s3_endpoint: String,
    /// The Lambda Invoke API.
    pub lambda_endpoint: String,
    lambda_port: u16,
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A folder removed when dropped.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                super::free_port()
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl LocalStack {
    /// Starts the stack on free ports; the Lambdas use `policy` when given.
    pub fn start(policy: Option<&Policy>) -> LocalStack {
        Self::start_with(policy, &[])
    }

    /// [`LocalStack::start`], with `bench` set in the bench's environment
    /// (`EC2_FORENSICS_BENCH_*` knobs: infra/local/moto_bench.py).
    pub fn start_with(policy: Option<&Policy>, bench: &[(&str, &str)]) -> LocalStack {
        // A port found free can be taken by another test's server before
        // ours binds it: stack.sh then stops what it started and exits 3,
        // and the stack starts again on other ports.
        for _ in 0..3 {
            if let Some(stack) = Self::try_start(policy, bench) {
                return stack;
            }
        }
        panic!("stack.sh up: a port taken three times over");
    }

    fn try_start(policy: Option<&Policy>, bench: &[(&str, &str)]) -> Option<LocalStack> {
        let state = tempdir::Dir::new("ec2-forensics-stack");
        let (moto_port, lambda_port, sfn_port, url_port, tls_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mut command = Command::new(repo_root().join("infra/local/stack.sh"));
        command.args([
            "up",
            &state.path().display().to_string(),
            &moto_port.to_string(),
            &lambda_port.to_string(),
            &sfn_port.to_string(),
            &url_port.to_string(),
            &tls_port.to_string(),
        ]);
        command.envs(bench.iter().copied());
        if let Some(policy) = policy {
            let file = state.path().join("policy.json");
            std::fs::write(
                &file,
                serde_json::to_vec(policy).expect("policy serialises"),
            )
            .expect("policy file written");
            command.env("POLICY_FILE", file);
        } else {
            command.env_remove("POLICY_FILE");
        }
        let status = command.status().expect("stack.sh runs");
        if status.code() == Some(3) {
            return None;
        }
        assert!(status.success(), "stack.sh up failed");
        Some(LocalStack {
            state,
            moto_endpoint: format!("http://127.0.0.1:{moto_port}"),
            s3_endpoint: format!("https://127.0.0.1:{tls_port}"),
            lambda_endpoint: format!("http://127.0.0.1:{lambda_port}"),
            lambda_port,
        })
    }

    /// Seeds an estate into the stack's emulator.
    pub fn seed(&self, name: &str) -> Estate {
        seed(&self.moto_endpoint, name)
    }

    /// Runs the main state machine on `input` and returns the runner's report.
    pub fn run(&self, input: &Value) -> Execution {
        self.run_definition(&repo_root().join("statemachine/forensics.asl.json"), input)
    }

    /// Runs the main state machine on `input`, every Task's first answer lost
    /// after its Lambda ran: each step is retried after its side effects.
    pub fn run_losing_first_answers(&self, input: &Value) -> Execution {
        self.execute(
            &repo_root().join("statemachine/forensics.asl.json"),
            input,
            &["--lose-first-answers"],
        )
    }

    /// Runs the state machine `definition` (a file) on `input`.
    pub fn run_definition(&self, definition: &Path, input: &Value) -> Execution {
        self.execute(definition, input, &[])
    }

    fn execute(&self, definition: &Path, input: &Value, flags: &[&str]) -> Execution {
        let input_file = self
            .state
            .path()
            .join(format!("input-{}.json", free_port()));
        std::fs::write(&input_file, input.to_string()).expect("input written");
        let runner = repo_root().join("infra/local/runner");
        let out = Command::new(runner.join("node_modules/.bin/node"))
            .arg(runner.join("run.mjs"))
            .arg("--definition")
            .arg(definition)
            .arg("--input")
            .arg(&input_file)
            .args(["--lambda-endpoint", &self.lambda_endpoint])
            .args(flags)
            .output()
            .expect("the local runner runs");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "runner printed no report ({e}); stderr: {}; lambda log: {}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.state.path().join("lambda.log")).unwrap_or_default()
            )
        })
    }

    /// Clients pointed at the stack's emulator.
    pub async fn clients(&self) -> Clients {
        clients_with_s3(&self.moto_endpoint, &self.s3_endpoint).await
    }

    /// A Step Functions client for the stack's local Step Functions API
    /// (where dispatch starts executions).
    pub async fn sfn(&self) -> aws_sdk_sfn::Client {
        let clients = self.clients().await;
        aws_sdk_sfn::Client::from_conf(
            clients
                .sfn
                .config()
                .to_builder()
                .endpoint_url(self.stack_env()["AWS_ENDPOINT_URL_SFN"].clone())
                .build(),
        )
    }

    /// The execution `arn` once it ended (five minutes at most): its status
    /// and output.
    pub async fn ended(&self, arn: &str) -> (String, Value) {
        let sfn = self.sfn().await;
        let started = std::time::Instant::now();
        loop {
            let out = sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .expect("DescribeExecution");
            let status = out.status().as_str().to_owned();
            if status != "RUNNING" {
                let output = out
                    .output()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or(Value::Null);
                return (status, output);
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(300),
                "{arn} still runs after five minutes"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// The Lambdas' evidence configuration (`infra/local/forensic.py`), by variable.
    pub fn forensic_env(&self) -> std::collections::BTreeMap<String, String> {
        self.env_file("forensic.env")
    }

    /// A file in the stack's state directory (removed with it).
    pub fn file(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }

    /// An IAM user of the emulator who may answer the approval gate (or, with
    /// `allowed` false, who may not): `infra/local/approver.py`. Its
    /// credentials and ARN, as `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// and `APPROVER_ARN`.
    pub fn approver(
        &self,
        name: &str,
        allowed: bool,
    ) -> std::collections::BTreeMap<String, String> {
        self.person(name, if allowed { &["answer-approval"] } else { &[] })
    }

    /// An IAM user of the emulator who may start runs through the start
    /// function's URL (a requester), and nothing else.
    pub fn requester(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        self.person(name, &["start-run"])
    }

    /// An IAM user of the emulator who may call the function URLs of
    /// `functions` (none: a person with no such permission).
    pub fn person(
        &self,
        name: &str,
        functions: &[&str],
    ) -> std::collections::BTreeMap<String, String> {
        let mut command = Command::new(repo_root().join(".venv/bin/python"));
        command
            .arg(repo_root().join("infra/local/approver.py"))
            .args([&self.moto_endpoint, name]);
        if functions.is_empty() {
            command.arg("--denied");
        }
        for function in functions {
            command.args(["--may", function]);
        }
        let out = command.output().expect("approver.py runs");
        assert!(
            out.status.success(),
            "approver.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The newest `case.json` the stack stored for `case_id` (what `verify`
    /// checks against the signed manifest).
    pub async fn stored_case(&self, case_id: &str) -> playbook::case::Case {
        let clients = self.clients().await;
        let bucket = self.forensic_env()["EVIDENCE_BUCKET"].clone();
        let object = clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(format!("cases/{case_id}/case.json"))
            .send()
            .await
            .expect("the Case is stored");
        let bytes = object.body.collect().await.expect("body").into_bytes();
        serde_json::from_slice(&bytes).expect("a Case")
    }

    /// Everything the Lambdas are configured with (endpoints, the state
    /// machine, the forensic side): what the CLI needs against this stack.
    pub fn stack_env(&self) -> std::collections::BTreeMap<String, String> {
        self.env_file("stack.env")
    }

    fn env_file(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        std::fs::read_to_string(self.state.path().join(name))
            .unwrap_or_else(|e| panic!("stack.sh wrote {name}: {e}"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Invokes one Lambda with `payload` through `cargo lambda invoke`, as
    /// EventBridge would, and returns its answer (or its error object).
    pub fn invoke(&self, function: &str, payload: &Value) -> Value {
        let file = self
            .state
            .path()
            .join(format!("payload-{}.json", free_port()));
        std::fs::write(&file, payload.to_string()).expect("payload written");
        let out = Command::new(repo_root().join(".venv/bin/cargo-lambda"))
            .args([
                "lambda",
                "invoke",
                function,
                "--invoke-address",
                "127.0.0.1",
            ])
            .args([
                "--invoke-port",
                &self.lambda_port.to_string(),
                "--output-format",
                "json",
            ])
            .arg("--data-file")
            .arg(&file)
            .output()
            .expect("cargo lambda invoke runs");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{function} answered no JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// The messages SNS delivered to the approval topic's local inbox (an
    /// SQS queue subscribed to it), each message's text.
    pub fn approval_messages(&self) -> Vec<String> {
        let inbox = self
            .forensic_env()
            .get("APPROVAL_INBOX_URL")
            .cloned()
            .expect("forensic.env names the approval inbox");
        let out = Command::new(repo_root().join(".venv/bin/python"))
            .arg(repo_root().join("infra/local/show_case.py"))
            .args(["inbox", &self.moto_endpoint, &inbox])
            .output()
            .expect("show_case.py runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the inbox is a JSON list")
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.state.path().join("lambda.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- cargo lambda watch log (last 40 lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = Command::new(repo_root().join("infra/local/stack.sh"))
            .args(["down", &self.state.path().display().to_string()])
            .status();
    }
}

/// What the local runner reports of one execution.
#[derive(Debug, Clone, Deserialize)]
pub struct Execution {
    /// SUCCEEDED or FAILED.
    pub status: String,
    /// The execution's output, or the last state output before a failure.
    pub output: Value,
    /// The states entered, in order.
    pub states: Vec<String>,
    /// The error of a failed execution.
    pub error: Option<String>,
    /// Its cause.
    pub cause: Option<String>,
    /// The Tasks whose first answer the bench lost ([`LocalStack::run_losing_first_answers`]).
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// One answer the bench lost: the Task, and the error it reported instead.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    /// The Task state.
    pub state: String,
    /// `Lambda.ClientExecutionTimeoutException` or `Lambda.Unknown`.
    pub error: String,
}
