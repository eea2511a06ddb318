#!/usr/bin/env python3
"""The moto server, with the SSM behaviour the playbook depends on and moto 5.2.5 lacks.

Test bench only: the product talks to it exactly as it talks to AWS. moto
answers DescribeInstanceInformation with HTTP 500, reports every command
`Success` at once with empty output, has no CancelCommand, ignores RunInstances' DisableApiTermination, and names the
root element of its ListParts answer `ListPartsResponse` where S3 says
`ListPartsResult` (boto3 does not mind; the Rust SDK refuses it). Here:

- An instance tagged `ec2-forensics-bench:ssm-agent` = `online`, and a
  forensic workstation (tagged `ec2-forensics:role` = `forensic-workstation`
  by launch-forensic-instance: the golden AMI ships the agent), has an SSM
  agent. It is Online (DescribeInstanceInformation lists it, with its
  platform, and commands sent to it run) only as SSM would see it: running,
  registered (a moment after launch), its instance profile's role allowing
  the agent (AmazonSSMManagedInstanceCore, or an inline policy with
  ssm:UpdateInstanceInformation), and its groups letting HTTPS out to
  anywhere or to the VPC's SSM endpoints' groups. Full isolation or a
  detached profile takes it offline. Any other instance is not managed.
- The emulator's EBS volumes hold no data. For a command on a workstation,
  the bench lays out what a Nitro instance shows: a /sys/block tree with one
  NVMe namespace per attached volume (model "Amazon Elastic Block Store",
  serial = the volume id without its dash) and, under a /dev directory, each
  volume's "device": a copy of the image EC2_FORENSICS_BENCH_DISK_IMAGE (the
  suspect's disk, see infra/local/evidence-disk.sh). The command runs in a
  private mount namespace where /sys/block and /dev show them
  (infra/local/nitro-namespace.sh), so the shipped run-forensics.sh finds
  them where it looks on EC2.
- S3 also answers over HTTPS, as S3 only does for the product, on
  EC2_FORENSICS_BENCH_TLS_PORT, with a certificate for 127.0.0.1 from a
  bench CA (EC2_FORENSICS_BENCH_TLS_DIR/ca.pem, made once). The Lambdas and
  the tests send S3 requests there, so every pre-signed URL the host scripts
  get is https (the scripts take nothing else); a command's environment
  trusts the bench CA as a host trusts AWS's (CURL_CA_BUNDLE).
- SendCommand checks each parameter against the document's `allowedPattern`
  (InvalidParameters otherwise, as SSM does). For a managed instance, each
  `aws:runShellScript` step of the document runs here, on this machine, under
  `sh`, with every parameter of `interpolationType: ENV_VAR` as the
  environment variable `SSM_<name>` (the SSM Agent's own convention): the
  invocation is `InProgress` until the script ends, then `Success` or `Failed`
  with its output (truncated as SSM truncates it: 24,000 and 8,000 characters).
  A command to an instance without an agent stays `Pending` until it times
  out at its delivery timeout, as in SSM.
- CancelCommand stops the script and reports `Cancelled`.
- ListParts answers with S3's root element.
- RunInstances honours DisableApiTermination (moto drops it; the product
  launches the forensic workstation protected).
- CreateVolume honours ClientToken: a token seen before answers with the
  volume it made, as EC2 does (moto makes another volume), so a retried
  attach-evidence finds its volumes.
- EBS snapshot lock (moto has none): LockSnapshot, UnlockSnapshot, and
  DeleteSnapshot refused while a lock holds (code SnapshotLocked, the
  bench's own).
- DynamoDB conditional writes are atomic, as DynamoDB makes them (moto's
  threaded server checks and writes in two steps).
- Each evidence volume attached to a workstation is a disk of its own: the
  stand-in image with the volume id in its first sector (EC2_FORENSICS_BENCH_DEVICES
  lists each one's SHA-256), so a device read for the wrong volume shows.
- S3 refuses what S3 refuses and moto lets through (infra/local/s3_checks.py):
  a SigV4 signature that does not verify (in the Authorization header, in a
  pre-signed URL, or on an aws-chunked body's chunks and trailer), a request
  dated more than 15 minutes away or a pre-signed one that has expired, a
  payload hash, Content-MD5 or x-amz-checksum-* (CRC32, CRC32C, CRC64NVME,
  SHA-1, SHA-256; header or trailer) that does not match the body.
- KMS Sign and Verify honour MessageType=DIGEST (moto 5.2.5 hashes the
  digest again and signs SHA-256(digest); KMS signs the digest itself, so a
  signature verifies with the public key over the signed bytes: `openssl dgst
  -sha256 -verify`, `ec2-forensics verify --offline`). For ECC keys a DIGEST
  message is signed and verified as the prehashed digest it is, and a digest
  of the wrong length is refused as KMS refuses it; RAW messages are as moto
  has them.
- Lambda function URLs with AWS_IAM auth, for `answer-approval` and
  `start-run` (moto has none), on EC2_FORENSICS_BENCH_URL_PORT, each under
  its own first path segment (`/answer-approval/`, `/start-run/`: AWS gives
  each function a host of its own): it refuses what AWS refuses (no or
  a malformed SigV4 signature, a signature that does not verify with the
  secret of an IAM user's access key, a request older than 15 minutes, a
  caller whose policies do not allow both lambda:InvokeFunctionUrl and
  lambda:InvokeFunction on the function, as AWS requires for function URLs) and otherwise invokes the function through the Lambda Invoke API
  of EC2_FORENSICS_BENCH_LAMBDA_ENDPOINT with the function URL event AWS
  sends, `requestContext.authorizer.iam` naming the verified caller. Only IAM
  users' access keys and their inline policies are understood here (a
  session's credentials, managed policies and conditions other than
  StringEquals/Bool on lambda:FunctionUrlAuthType and
  lambda:InvokedViaFunctionUrl are refused): stricter than AWS, never kinder.

- Security Hub's BatchUpdateFindings (PATCH /findings/batchupdate; moto
  has none): it updates the findings of the caller's account and Region that
  the request identifies by Id and ProductArn (Workflow.Status, Note with
  UpdatedAt, the UserDefinedFields the request names), refusing what
  Security Hub refuses (InvalidInputException: no or over 100 findings, a
  Note without Text or UpdatedBy or over 512 characters, an unknown workflow
  status, nothing to update), and
  answers ProcessedFindings and UnprocessedFindings (FindingNotFound) as
  Security Hub does; GetFindings shows the result.

- CloudWatch over Smithy RPC v2 CBOR (POST /service/GraniteServiceVersion
  20100801/operation/<Operation>, what aws-sdk-cloudwatch speaks; moto
  5.2.5 answers CloudWatch's JSON and query protocols only): the request is
  handed to moto as the same operation in CloudWatch's JSON protocol
  (awsJson1_0, which CloudWatch's service model lists too), and moto's
  answer, an error included, goes back as CBOR, each value typed as the
  service model types it (timestamps as epoch-seconds tag 1). The record
  (below) holds the request as moto saw it, X-Amz-Target naming the
  operation.

- When EC2_FORENSICS_BENCH_RECORD names a file, every request is appended
  to it as one JSON line (tests/iam proves the deployed policies allow each):
  the caller (the function whose access key signed it: infra/local/stack.sh
  gives each function its own, see function-credentials.sh; a session of a
  role the function assumed is that role's, with the function that assumed
  it), the service, the method, path, query, `x-amz-*` headers and, for
  every service but S3, the parameters; the tags, encryption and key of
  each EC2 resource the request names, as they were before it; the answer's
  status. EC2_FORENSICS_BENCH_RUN_ID names the stack in each line.

Environment: EC2_FORENSICS_BENCH_HOST_ROOT, when set, is where the scripts run
(a directory per invocation under it, removed when it ends); otherwise a
temporary directory. EC2_FORENSICS_BENCH_DISK_IMAGE, when unset, is built
at start by infra/local/evidence-disk.sh.
"""

import contextvars
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto import server
from moto.kms import responses as kms_responses
from moto.kms import utils as kms_utils
from moto.kms.exceptions import ValidationException
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.dynamodb.models import DynamoDBBackend
from moto.ec2.responses import elastic_block_store as ec2_volumes
from moto.ec2.responses import instances as ec2_instances
from moto.s3 import responses as s3_responses
from moto.ssm import models, responses
from moto.ssm.exceptions import SSMException, ValidationException

from bench_tls import tls_files

AGENT_TAG = "ec2-forensics-bench:ssm-agent"
ROLE_TAG = "ec2-forensics:role"
WORKSTATION_ROLE = "forensic-workstation"
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000

_running: dict[tuple[str, str], subprocess.Popen] = {}
_lock = threading.Lock()


class InvalidParameters(SSMException):
    def __init__(self, message: str):
        super().__init__("InvalidParameters", message)


def _instances(backend):
    ec2 = ec2_backends[backend.account_id][backend.region_name]
    for reservation in ec2.all_reservations():
        for instance in reservation.instances:
            yield instance


def _tags(instance) -> dict:
    return {t["key"]: t["value"] for t in instance.get_tags()}


# How long an agent takes to register after launch (SSM: about a minute; the
# bench keeps it short, but a caller that does not wait for Online sees it).
REGISTRATION_SECONDS = 1.0
SSM_AGENT_POLICY = "AmazonSSMManagedInstanceCore"


def _agent_online(instance) -> bool:
    """Online as SSM reports an agent: the instance runs one (tagged, or a
    workstation), is running, has registered (REGISTRATION_SECONDS after
    launch), its instance profile's role lets the agent talk to SSM, and its
    ENIs' groups still let it reach SSM (HTTPS out to anywhere, or to the
    groups of the VPC's SSM interface endpoints): full isolation or a
    detached profile cuts it off, as on AWS."""
    tags = _tags(instance)
    has_agent = tags.get(AGENT_TAG) == "online" or tags.get(ROLE_TAG) == WORKSTATION_ROLE
    if not (has_agent and instance.state == "running"):
        return False
    launched = instance.launch_time
    if isinstance(launched, str):
        launched = datetime.datetime.fromisoformat(launched.replace("Z", "+00:00"))
    if launched.tzinfo is None:
        launched = launched.replace(tzinfo=datetime.timezone.utc)
    registered = (datetime.datetime.now(datetime.timezone.utc) - launched).total_seconds() >= REGISTRATION_SECONDS
    return registered and _profile_allows_agent(instance) and _reaches_ssm(instance)


def _profile_allows_agent(instance) -> bool:
    association = instance.ec2_backend.iam_instance_profile_associations.get(instance.id)
    profile = getattr(association, "iam_instance_profile", None)
    for role in getattr(profile, "roles", None) or []:
        for arn, policy in role.managed_policies.items():
            documents = " ".join(str(v.document) for v in getattr(policy, "versions", []))
            if arn.endswith(f"/{SSM_AGENT_POLICY}") or "ssm:UpdateInstanceInformation" in documents:
                return True
        if any("ssm:UpdateInstanceInformation" in str(doc) for doc in role.policies.values()):
            return True
    return False


def _allows_https_out(rule, endpoint_groups: set) -> bool:
    ports = rule.ip_protocol in ("-1", None) or (
        rule.ip_protocol in ("tcp", "6") and (rule.from_port or 0) <= 443 <= (rule.to_port or 65535))
    if not ports:
        return False
    anywhere = rule.ip_range.get("CidrIp") == "0.0.0.0/0" or rule.ip_range.get("CidrIpv6") == "::/0"
    to_endpoint = (rule.source_group or {}).get("GroupId") in endpoint_groups
    return anywhere or to_endpoint


def _reaches_ssm(instance) -> bool:
    backend = instance.ec2_backend
    for eni in instance.nics.values():
        vpc_id = eni.subnet.vpc_id
        endpoint_groups = {
            group
            for endpoint in backend.vpc_end_points.values()
            if endpoint.vpc_id == vpc_id and endpoint.service_name.rsplit(".", 1)[-1] in ("ssm", "ssmmessages", "ec2messages")
            for group in (endpoint.security_group_ids or [])
        }
        if any(_allows_https_out(rule, endpoint_groups) for group in eni.group_set for rule in group.egress_rules):
            return True
    return False


def _nitro_devices(instance, workdir: str) -> list:
    """A /sys/block and /dev for the instance's attached volumes; the command
    prefix that shows them at /sys/block and /dev (nitro-namespace.sh)."""
    sys_block = os.path.join(workdir, "sys", "block")
    dev = os.path.join(workdir, "dev")
    os.makedirs(dev, exist_ok=True)
    image = os.environ.get("EC2_FORENSICS_BENCH_DISK_IMAGE")
    mapping = sorted(instance.block_device_mapping.items())
    for index, (_, block) in enumerate(mapping):
        name = f"nvme{index}n1"
        device = os.path.join(sys_block, name, "device")
        os.makedirs(device, exist_ok=True)
        with open(os.path.join(device, "model"), "w") as f:
            f.write("Amazon Elastic Block Store              \n")
        with open(os.path.join(device, "serial"), "w") as f:
            f.write(block.volume_id.replace("-", "") + "\n")
        if image:
            path = os.path.join(dev, name)
            shutil.copyfile(image, path)
            _mark_volume(path, block.volume_id)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nitro-namespace.sh")
    return ["unshare", "--mount", "--propagation", "private", "bash", script, workdir]


def _memory_device(workdir: str) -> list:
    """A suspect host's memory source, where capture-memory.sh looks for one:
    this machine may offer none of /proc/kcore, /dev/crash, /dev/mem (a
    container), and the stand-in AVML reads no memory, so an empty
    /dev/crash is shown to the command (nitro-namespace.sh, with no
    volumes)."""
    os.makedirs(os.path.join(workdir, "sys", "block"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "dev"), exist_ok=True)
    open(os.path.join(workdir, "dev", "crash"), "w").close()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nitro-namespace.sh")
    return ["unshare", "--mount", "--propagation", "private", "bash", script, workdir]


def _mark_volume(path: str, volume_id: str) -> None:
    """Makes each evidence volume's disk its own: the volume id in the first
    sector, which the ext4 stand-in leaves unused (its superblock starts at
    byte 1024). A device read for the wrong volume then hashes differently.
    With EC2_FORENSICS_BENCH_DEVICES naming a file, each volume's SHA-256 is
    appended to it (a JSON line), for the tests to check the analysis read
    each volume's own disk."""
    with open(path, "r+b") as f:
        f.write(f"ec2-forensics bench disk of {volume_id}\n".encode())
    log = os.environ.get("EC2_FORENSICS_BENCH_DEVICES")
    if log:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        with _record_lock, open(log, "a") as out:
            out.write(json.dumps({"volumeId": volume_id, "sha256": digest.hexdigest()}) + "\n")


def _platform(instance) -> str:
    return "Windows" if (instance.platform or "").lower() == "windows" else "Linux"


def _document(backend, name: str):
    try:
        documents = backend._get_documents(name)
    except Exception:
        return None
    document = documents.get_default_version()
    text = document.content
    return yaml.safe_load(text)


def describe_instance_information(self):
    wanted = None
    for item in self._get_param("Filters", []) + self._get_param("InstanceInformationFilterList", []):
        key = item.get("Key") or item.get("key")
        if key == "InstanceIds":
            wanted = set(item.get("Values") or item.get("valueSet") or [])
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    listed = []
    for instance in _instances(self.ssm_backend):
        if wanted is not None and instance.id not in wanted:
            continue
        if not _agent_online(instance):
            continue
        platform = _platform(instance)
        listed.append(
            {
                "InstanceId": instance.id,
                "PingStatus": "Online",
                "LastPingDateTime": now,
                "AgentVersion": "3.3.2746.0",
                "IsLatestVersion": True,
                "PlatformType": platform,
                "PlatformName": "Amazon Linux" if platform == "Linux" else "Microsoft Windows Server 2022",
                "ResourceType": "EC2Instance",
                "IPAddress": instance.private_ip,
                "ComputerName": instance.private_ip,
            }
        )
    return responses.ActionResult({"InstanceInformationList": listed})


def _check_parameters(document, parameters: dict) -> None:
    declared = (document or {}).get("parameters") or {}
    for name, values in parameters.items():
        if name not in declared:
            raise InvalidParameters(f"document does not declare the parameter {name}")
        pattern = declared[name].get("allowedPattern")
        for value in values:
            if pattern is not None and not re.search(pattern, value):
                raise InvalidParameters(f"parameter {name} does not match its allowedPattern")


def _finish(invocation: dict, status: str, code: int, out: str, err: str) -> None:
    end = datetime.datetime.now(datetime.timezone.utc)
    invocation.update(
        Status=status,
        StatusDetails=status,
        ResponseCode=code,
        StandardOutputContent=out[:STDOUT_LIMIT],
        StandardErrorContent=err[:STDERR_LIMIT],
        ExecutionEndDateTime=end.isoformat(),
    )


def _run(command, instance, invocation: dict, steps: list, env: dict) -> None:
    root = os.environ.get("EC2_FORENSICS_BENCH_HOST_ROOT")
    workdir = tempfile.mkdtemp(prefix=f"{invocation['InstanceId']}-", dir=root)
    namespace = []
    if _tags(instance).get(ROLE_TAG) == WORKSTATION_ROLE:
        namespace = _nitro_devices(instance, workdir)
    else:
        namespace = _memory_device(workdir)
    out, err, code = "", "", 0
    invocation.update(Status="InProgress", StatusDetails="InProgress")
    for step in steps:
        lines = step.get("inputs", {}).get("runCommand", [])
        script = "\n".join(lines) if isinstance(lines, list) else str(lines)
        process = subprocess.Popen(
            [*namespace, "sh", "-c", script],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        key = (command.command_id, invocation["InstanceId"])
        with _lock:
            _running[key] = process
        stdout, stderr = process.communicate()
        with _lock:
            _running.pop(key, None)
        out, err, code = out + stdout, err + stderr, process.returncode
        if invocation["Status"] == "Cancelled":
            shutil.rmtree(workdir, ignore_errors=True)
            return
        if code != 0:
            break
    shutil.rmtree(workdir, ignore_errors=True)
    _finish(invocation, "Success" if code == 0 else "Failed", code, out, err)


original_send_command = models.SimpleSystemManagerBackend.send_command


def send_command(self, **kwargs):
    document = _document(self, kwargs.get("document_name") or "")
    parameters = kwargs.get("parameters") or {}
    if document is not None:
        _check_parameters(document, parameters)
    command = original_send_command(self, **kwargs)
    managed = {i.id: i for i in _instances(self) if _agent_online(i)}
    steps = [
        step
        for step in (document or {}).get("mainSteps", [])
        if step.get("action") == "aws:runShellScript"
    ]
    declared = (document or {}).get("parameters") or {}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    if os.environ.get("EC2_FORENSICS_BENCH_TLS_DIR"):
        env["CURL_CA_BUNDLE"] = os.path.join(os.environ["EC2_FORENSICS_BENCH_TLS_DIR"], "ca.pem")
    # A slow capture, for the tests of auto's memory deadline (avml-stand-in.sh).
    if os.environ.get("EC2_FORENSICS_BENCH_AVML_SECONDS"):
        env["EC2_FORENSICS_BENCH_AVML_SECONDS"] = os.environ["EC2_FORENSICS_BENCH_AVML_SECONDS"]
    for name, values in parameters.items():
        if declared.get(name, {}).get("interpolationType") == "ENV_VAR":
            env[f"SSM_{name}"] = ",".join(values)
    for invocation in command.invocations:
        invocation.update(
            Status="Pending",
            StatusDetails="Pending",
            ResponseCode=-1,
            ExecutionEndDateTime="",
            PluginName=steps[0]["name"] if steps else invocation["PluginName"],
        )
        if invocation["InstanceId"] in managed and steps:
            instance = managed[invocation["InstanceId"]]
            threading.Thread(target=_run, args=(command, instance, invocation, steps, env),
                             daemon=True).start()
    return command


def cancel_command(self):
    command_id = self._get_param("CommandId")
    command = self.ssm_backend.get_command_by_id(command_id)
    for invocation in command.invocations:
        if invocation["Status"] in ("Pending", "InProgress", "Delayed"):
            invocation.update(Status="Cancelled", StatusDetails="Cancelled", ResponseCode=-1)
            with _lock:
                process = _running.get((command_id, invocation["InstanceId"]))
            if process is not None:
                process.kill()
    return responses.ActionResult({})


def get_command_invocation(self):
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    if not command_id or not instance_id:
        raise ValidationException("CommandId and InstanceId are required")
    command = self.ssm_backend.get_command_by_id(command_id)
    invocation = command.get_invocation(instance_id, None)
    if invocation["Status"] == "Pending":
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        waited = now - command.requested_date_time.replace(tzinfo=None)
        if waited.total_seconds() > command.timeout_seconds:
            _finish(invocation, "DeliveryTimedOut", -1, "", "")
    return responses.ActionResult(invocation)


original_list_parts = s3_responses.S3Response.list_parts


def list_parts(self):
    status, headers, body = original_list_parts(self)
    if isinstance(body, bytes):
        body = body.replace(b"ListPartsResponse>", b"ListPartsResult>").replace(
            b"<ListPartsResponse ", b"<ListPartsResult ")
    else:
        body = body.replace("ListPartsResponse>", "ListPartsResult>").replace(
            "<ListPartsResponse ", "<ListPartsResult ")
    return status, headers, body


s3_responses.S3Response.list_parts = list_parts

original_run_instances = ec2_instances.InstanceResponse.run_instances


def run_instances(self):
    protect = str(self._get_param("DisableApiTermination")).lower() == "true"
    backend = self.ec2_backend
    before = {i.id for r in backend.all_reservations() for i in r.instances}
    answer = original_run_instances(self)
    if protect:
        for reservation in backend.all_reservations():
            for instance in reservation.instances:
                if instance.id not in before:
                    instance.disable_api_termination = True
    return answer


ec2_instances.InstanceResponse.run_instances = run_instances

original_create_volume = ec2_volumes.ElasticBlockStore.create_volume


def create_volume(self):
    """CreateVolume with a ClientToken EC2 has seen answers with the volume
    that token made (EC2's idempotency; moto makes a second volume)."""
    token = self._get_param("ClientToken")
    made = self.ec2_backend.__dict__.setdefault("bench_volume_tokens", {})
    if token and token in made and made[token] in self.ec2_backend.volumes:
        return ec2_volumes.ActionResult(self.ec2_backend.volumes[made[token]])
    before = set(self.ec2_backend.volumes)
    answer = original_create_volume(self)
    if token:
        for volume_id in set(self.ec2_backend.volumes) - before:
            made[token] = volume_id
    return answer


ec2_volumes.ElasticBlockStore.create_volume = create_volume


# EBS snapshot lock, which moto 5.2.5 does not have: LockSnapshot and
# UnlockSnapshot as the EC2 API reference describes them (governance mode,
# or compliance mode, unlockable only in its cooling-off period), and
# DeleteSnapshot refused while a lock holds. The refusal's code is the
# bench's own (SnapshotLocked): no published page names EC2's, and the
# product never reads it (cleanup decides from the signed Case first).
def _snapshot_locks(backend) -> dict:
    return backend.__dict__.setdefault("bench_snapshot_locks", {})


def _lock_holds(lock: dict) -> bool:
    return lock["LockExpiresOn"] > datetime.datetime.now(datetime.timezone.utc)


def lock_snapshot(self):
    snapshot_id = self._get_param("SnapshotId")
    self.ec2_backend.get_snapshot(snapshot_id)
    mode = self._get_param("LockMode")
    days = self._get_int_param("LockDuration")
    if mode not in ("governance", "compliance") or not days or not 1 <= days <= 36500:
        raise EC2ClientError("InvalidParameterValue", "LockMode governance or compliance, LockDuration 1-36500 days")
    locks = _snapshot_locks(self.ec2_backend)
    held = locks.get(snapshot_id)
    if held and _lock_holds(held) and held["LockState"] == "compliance":
        raise EC2ClientError("SnapshotLocked", f"{snapshot_id} is locked in compliance mode")
    now = datetime.datetime.now(datetime.timezone.utc)
    lock = {"SnapshotId": snapshot_id, "LockState": mode, "LockDuration": days, "LockCreatedOn": now,
            "LockDurationStartTime": now, "LockExpiresOn": now + datetime.timedelta(days=days)}
    locks[snapshot_id] = lock
    return ec2_volumes.ActionResult(lock)


def unlock_snapshot(self):
    snapshot_id = self._get_param("SnapshotId")
    self.ec2_backend.get_snapshot(snapshot_id)
    locks = _snapshot_locks(self.ec2_backend)
    held = locks.get(snapshot_id)
    if held and _lock_holds(held) and held["LockState"] == "compliance":
        raise EC2ClientError("SnapshotLocked", f"{snapshot_id} is locked in compliance mode")
    locks.pop(snapshot_id, None)
    return ec2_volumes.ActionResult({"SnapshotId": snapshot_id})


original_delete_snapshot = ec2_volumes.ElasticBlockStore.delete_snapshot


def delete_snapshot(self):
    snapshot_id = self._get_param("SnapshotId")
    held = _snapshot_locks(self.ec2_backend).get(snapshot_id)
    if held and _lock_holds(held):
        raise EC2ClientError("SnapshotLocked", f"{snapshot_id} is locked ({held['LockState']}) and cannot be deleted")
    return original_delete_snapshot(self)


ec2_volumes.ElasticBlockStore.lock_snapshot = lock_snapshot
ec2_volumes.ElasticBlockStore.unlock_snapshot = unlock_snapshot
ec2_volumes.ElasticBlockStore.delete_snapshot = delete_snapshot


# DynamoDB writes one item at a time: a conditional write's check and write
# are one step, as DynamoDB guarantees. moto's threaded server could let two
# conditional writes both pass their check (the lease table relies on this).
_item_writes = threading.Lock()


def _one_at_a_time(write):
    def serialised(self, *args, **kwargs):
        with _item_writes:
            return write(self, *args, **kwargs)
    return serialised


for _write in ("put_item", "update_item", "delete_item"):
    setattr(DynamoDBBackend, _write, _one_at_a_time(getattr(DynamoDBBackend, _write)))
models.SimpleSystemManagerBackend.send_command = send_command
responses.SimpleSystemManagerResponse.describe_instance_information = describe_instance_information
responses.SimpleSystemManagerResponse.cancel_command = cancel_command
responses.SimpleSystemManagerResponse.get_command_invocation = get_command_invocation

_digest = contextvars.ContextVar("kms_message_is_digest", default=False)


def _knowing_message_type(handler):
    def wrapped(self):
        token = _digest.set(self._get_param("MessageType") == "DIGEST")
        try:
            return handler(self)
        finally:
            _digest.reset(token)

    return wrapped


def _prehashed(key, message: bytes, signing_algorithm: str):
    kms_utils.validate_signing_algorithm(signing_algorithm, key.valid_signing_algorithms)
    algorithm = key._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
    if len(message) != algorithm.digest_size:
        raise ValidationException(
            f"Digest is invalid length for algorithm {signing_algorithm}."
        )
    return ec.ECDSA(utils.Prehashed(algorithm))


_sign, _verify = kms_utils.ECDSAPrivateKey.sign, kms_utils.ECDSAPrivateKey.verify


def _ecdsa_sign(self, message: bytes, signing_algorithm: str) -> bytes:
    if not _digest.get():
        return _sign(self, message, signing_algorithm)
    return self.private_key.sign(message, _prehashed(self, message, signing_algorithm))


def _ecdsa_verify(self, message: bytes, signature: bytes, signing_algorithm: str) -> bool:
    if not _digest.get():
        return _verify(self, message, signature, signing_algorithm)
    algorithm = _prehashed(self, message, signing_algorithm)
    try:
        self.private_key.public_key().verify(signature, message, algorithm)
        return True
    except InvalidSignature:
        return False


kms_responses.KmsResponse.sign = _knowing_message_type(kms_responses.KmsResponse.sign)
kms_responses.KmsResponse.verify = _knowing_message_type(kms_responses.KmsResponse.verify)
kms_utils.ECDSAPrivateKey.sign = _ecdsa_sign
kms_utils.ECDSAPrivateKey.verify = _ecdsa_verify


URL_FUNCTIONS = ("answer-approval", "start-run", "cleanup-case")
URL_ACCOUNT = "123456789012"
URL_REGION = os.environ.get("AWS_REGION", "us-east-1")


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _caller_of(access_key: str):
    """The IAM user that owns `access_key`, and the key's secret."""
    from moto.iam.models import iam_backends

    for user in iam_backends[URL_ACCOUNT]["aws"].users.values():
        for key in user.access_keys:
            if key.access_key_id == access_key and key.status == "Active":
                return user, key.secret_access_key
    raise _Refused(403, "UnrecognizedClientException", "The security token included in the request is invalid.")


def _verify_signature(method: str, url: str, headers: dict, body: bytes):
    """Checks a SigV4 `Authorization` header as AWS does; the caller."""
    import hmac
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = headers.get("authorization", "")
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
        r"SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})", authorization)
    if not match:
        raise _Refused(403, "MissingAuthenticationTokenException", "Missing or malformed SigV4 Authorization header")
    access_key, day, region, service, signed, signature = match.groups()
    if service != "lambda" or region != URL_REGION:
        raise _Refused(403, "InvalidSignatureException", f"Credential should be scoped to {URL_REGION}/lambda")
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise _Refused(403, "InvalidSignatureException", "no valid X-Amz-Date") from None
    if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 15 * 60 or amz_date[:8] != day:
        raise _Refused(403, "InvalidSignatureException", "Signature expired or not yet valid")
    user, secret = _caller_of(access_key)
    names = signed.split(";")
    if "host" not in names:
        raise _Refused(403, "InvalidSignatureException", "the host header must be signed")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers.get(name, "") for name in names})
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(access_key, secret), "lambda", region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise _Refused(403, "InvalidSignatureException",
                       "The request signature we calculated does not match the signature you provided.")
    return user, access_key


def _allows(user, action: str, resource: str, context: dict) -> bool:
    """The user's inline policies: an Allow for action on resource whose
    conditions (StringEquals, Bool) hold in `context`, and no Deny."""
    import fnmatch

    def listed(value):
        return value if isinstance(value, list) else [value]

    def holds(condition) -> bool:
        for operator, keys in (condition or {}).items():
            if operator not in ("StringEquals", "Bool"):
                return False
            for key, wanted in keys.items():
                have = context.get(key)
                if have is None or str(have).lower() not in [str(w).lower() for w in listed(wanted)]:
                    return False
        return True

    allowed = False
    for text in user.policies.values():
        document = json.loads(text) if isinstance(text, str) else text
        for statement in listed(document.get("Statement", [])):
            actions = [a.lower() for a in listed(statement.get("Action", []))]
            resources = listed(statement.get("Resource", []))
            if not any(fnmatch.fnmatchcase(action.lower(), a) for a in actions):
                continue
            if not any(fnmatch.fnmatchcase(resource, r) for r in resources):
                continue
            if not holds(statement.get("Condition")):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _function_url_server(port: int, lambda_endpoint: str) -> None:
    import http.server
    import urllib.request
    import uuid


    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("function url: " + (fmt % args) + "\n")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            url = f"http://{headers.get('host', '')}{self.path}"
            function = self.path.split("?")[0].strip("/").split("/")[0]
            if function not in URL_FUNCTIONS:
                self._answer(404, json.dumps({"Message": f"no function URL at {self.path}"}).encode())
                return
            function_arn = f"arn:aws:lambda:{URL_REGION}:{URL_ACCOUNT}:function:{function}"
            try:
                user, access_key = _verify_signature("POST", url, headers, body)
                # A function URL needs both (Lambda, since October 2025).
                context = {"lambda:FunctionUrlAuthType": "AWS_IAM", "lambda:InvokedViaFunctionUrl": "true"}
                for action in ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction"):
                    if not _allows(user, action, function_arn, context):
                        raise _Refused(403, "AccessDeniedException",
                                       f"{user.arn} is not authorized to perform: {action} on {function_arn}")
            except _Refused as refused:
                self._answer(refused.status, json.dumps({"Message": refused.message, "Type": refused.kind}).encode())
                return
            now = datetime.datetime.now(datetime.timezone.utc)
            event = {
                "version": "2.0", "routeKey": "$default", "rawPath": self.path.split("?")[0],
                "rawQueryString": self.path.partition("?")[2], "headers": headers,
                "requestContext": {
                    "accountId": URL_ACCOUNT, "apiId": "bench", "domainName": headers.get("host", ""),
                    "domainPrefix": "bench", "requestId": str(uuid.uuid4()),
                    "routeKey": "$default", "stage": "$default",
                    "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
                    "http": {"method": "POST", "path": self.path.split("?")[0], "protocol": "HTTP/1.1",
                             "sourceIp": self.client_address[0], "userAgent": headers.get("user-agent", "")},
                    "authorizer": {"iam": {"accessKey": access_key, "accountId": URL_ACCOUNT,
                                           "callerId": user.id, "cognitoIdentity": None,
                                           "principalOrgId": None, "userArn": user.arn, "userId": user.id}},
                },
                "body": body.decode("utf-8", "replace"), "isBase64Encoded": False,
            }
            invoke = urllib.request.Request(
                f"{lambda_endpoint}/2015-03-31/functions/{function}/invocations",
                data=json.dumps(event).encode(), headers={"content-type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(invoke, timeout=300) as answered:
                    response = json.loads(answered.read() or b"{}")
            except Exception as e:  # the function failed: as AWS, a 502
                self._answer(502, json.dumps({"Message": f"the function failed: {e}"}).encode())
                return
            if "statusCode" not in response:
                self._answer(502, json.dumps({"Message": "the function's answer is not an HTTP response",
                                               "answer": response}).encode())
                return
            self._answer(int(response["statusCode"]), (response.get("body") or "").encode())

    server_ = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server_.serve_forever, daemon=True).start()


FUNCTION_KEY_PREFIX = "LOCALFN"
_EC2_ID = re.compile(r"^(i|vol|snap|sg|eni|subnet|vpc|acl|ami|eipalloc|eipassoc|iip-assoc)-[0-9a-f]+$")
_SKIPPED_HEADERS = {"x-amz-security-token", "x-amz-date", "x-amz-content-sha256", "x-amz-user-agent"}
_assumed_by: dict[str, str] = {}
_record_lock = threading.Lock()


def _function_of(access_key: str):
    """The function whose per-function key this is (function-credentials.sh), or None."""
    if not access_key.startswith(FUNCTION_KEY_PREFIX):
        return None
    try:
        return bytes.fromhex(access_key[len(FUNCTION_KEY_PREFIX):]).decode()
    except ValueError:
        return None


def _caller(access_key: str) -> dict:
    function = _function_of(access_key)
    if function is not None:
        return {"function": function}
    from moto.iam.models import iam_backends

    for account in list(iam_backends.values()):
        key = account["aws"].access_keys.get(access_key)
        if key is not None and getattr(key, "role_arn", None):
            return {"role": key.role_arn, "assumedBy": _assumed_by.get(access_key)}
    return {"accessKey": access_key}


def _signature_facts(environ) -> tuple[str, str, str]:
    """Access key, region and service of the SigV4 signature (header or pre-signed)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request", authorization)
    if not match:
        from urllib.parse import parse_qs

        credential = (parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential") or [""])[0]
        match = re.match(r"([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request", credential)
    return match.groups() if match else ("", "", "")


def _ec2_ids(value, found: set) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _ec2_ids(item, found)
    elif isinstance(value, list):
        for item in value:
            _ec2_ids(item, found)
    elif isinstance(value, str) and _EC2_ID.match(value):
        found.add(value)


def _ec2_resource(backend, resource_id: str) -> dict:
    """What IAM conditions read of an EC2 resource: its tags, its encryption."""
    facts: dict = {"tags": dict(backend.tags.get(resource_id, {}))}
    try:
        if resource_id.startswith("vol-"):
            volume = backend.get_volume(resource_id)
            facts.update(encrypted=bool(volume.encrypted), kmsKeyId=volume.kms_key_id)
        elif resource_id.startswith("snap-"):
            snapshot = backend.get_snapshot(resource_id)
            key = getattr(snapshot, "kms_key_id", None) or getattr(snapshot.volume, "kms_key_id", None)
            facts.update(encrypted=bool(snapshot.encrypted), kmsKeyId=key,
                         owner=getattr(snapshot, "owner_id", None))
        elif resource_id.startswith("i-"):
            instance = backend.get_instance(resource_id)
            facts.update(volumes=sorted(b.volume_id for b in instance.block_device_mapping.values()))
        elif resource_id.startswith("ami-"):
            image = backend.describe_images(image_ids=[resource_id])[0]
            facts.update(owner=image.owner_id)
    except Exception:  # gone or never there: the request's own answer says so
        pass
    return facts


def _describe_request(environ, body: bytes | None) -> dict:
    from urllib.parse import parse_qs

    access_key, region, service = _signature_facts(environ)
    headers = {}
    for name, value in environ.items():
        if name.startswith("HTTP_X_AMZ_") or name in ("CONTENT_TYPE", "HTTP_CONTENT_MD5"):
            header = name.removeprefix("HTTP_").replace("_", "-").lower()
            if header not in _SKIPPED_HEADERS:
                headers[header] = value
    entry = {
        "run": os.environ.get("EC2_FORENSICS_BENCH_RUN_ID", ""),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "caller": _caller(access_key),
        "service": service,
        "region": region,
        "method": environ.get("REQUEST_METHOD"),
        "host": environ.get("HTTP_HOST", ""),
        "path": environ.get("PATH_INFO", ""),
        "query": parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True),
        "headers": headers,
    }
    if body is not None:
        content_type = environ.get("CONTENT_TYPE", "")
        if "json" in content_type:
            try:
                entry["params"] = json.loads(body or b"{}")
            except ValueError:
                entry["params"] = None
        else:
            entry["params"] = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                              keep_blank_values=True).items()}
    if service == "ec2":
        ids: set = set()
        _ec2_ids(entry.get("params"), ids)
        if ids:
            backend = ec2_backends[URL_ACCOUNT][region or URL_REGION]
            entry["resources"] = {i: _ec2_resource(backend, i) for i in sorted(ids)}
    return entry


def _append_record(path: str, entry: dict) -> None:

    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    with _record_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _recording(app, path: str):
    """The emulator's WSGI app, appending each request it answers to `path`."""
    import io

    def wrapped(environ, start_response):
        _, _, service = _signature_facts(environ)
        body = None
        if service and service != "s3":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        try:
            entry = _describe_request(environ, body) if service else None
        except Exception as e:  # a record never breaks the request it describes
            entry = {"run": os.environ.get("EC2_FORENSICS_BENCH_RUN_ID", ""), "unrecorded": str(e),
                     "path": environ.get("PATH_INFO", "")}
        status = {}

        def recording_start(code, headers, exc_info=None):
            status["code"] = int(code.split()[0])
            return start_response(code, headers, exc_info)

        answer = app(environ, recording_start)
        assumed = entry is not None and service == "sts" and (entry.get("params") or {}).get("Action") == "AssumeRole"
        if assumed:
            answer = [b"".join(answer)]
            match = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", answer[0])
            function = entry["caller"].get("function")
            if match and function:
                _assumed_by[match.group(1).decode()] = function
        if entry is not None:
            entry["status"] = status.get("code")
            _append_record(path, entry)
        return answer

    return wrapped


def _secret_of(access_key: str):
    """The secret S3 checks a signature with: an IAM user's or an assumed
    role's key as moto made it; any other key is the bench's (`testing`)."""
    from moto.iam.models import iam_backends

    for account in list(iam_backends.values()):
        key = account["aws"].access_keys.get(access_key)
        if key is not None:
            return key.secret_access_key
    try:
        return _caller_of(access_key)[1]
    except _Refused:
        return "testing"


def _checking_s3(app):
    """The emulator's WSGI app behind what S3 checks and moto does not
    (infra/local/s3_checks.py): SigV4 signatures, header-signed, pre-signed
    and chunk by chunk, clock skew and expiry, payload hashes, Content-MD5
    and checksums, in headers or aws-chunked trailers."""
    from s3_checks import Refused, check_request

    def wrapped(environ, start_response):
        if _signature_facts(environ)[2] != "s3":
            # The HTTPS port is S3's alone, and S3 serves the product nothing
            # unsigned: a request there without a SigV4 signature for S3
            # (none, or a garbled credential) is refused, as S3 refuses an
            # anonymous request to a private bucket.
            if environ.get("wsgi.url_scheme") == "https":
                start_response("403 AccessDenied", [("Content-Type", "application/xml")])
                return [Refused(403, "AccessDenied", "Access Denied").xml()]
            return app(environ, start_response)
        try:
            check_request(environ, _secret_of, datetime.datetime.now(datetime.timezone.utc))
        except Refused as refused:
            start_response(f"{refused.status} {refused.code}", [("Content-Type", "application/xml")])
            return [refused.xml()]
        return app(environ, start_response)

    return wrapped


def _batch_update_refusal(request: dict):
    """What Security Hub refuses in a BatchUpdateFindings request (its API
    reference): 1 to 100 findings, each named by Id and ProductArn; a Note
    with both Text (1 to 512 characters) and UpdatedBy; a known workflow
    status; something to update. None when nothing."""
    identifiers = request.get("FindingIdentifiers") or []
    if not 1 <= len(identifiers) <= 100:
        return "FindingIdentifiers must name 1 to 100 findings"
    if any(not i.get("Id") or not i.get("ProductArn") for i in identifiers):
        return "each FindingIdentifier needs Id and ProductArn"
    note = request.get("Note")
    if note is not None:
        if not note.get("Text") or not note.get("UpdatedBy"):
            return "Note needs Text and UpdatedBy"
        if len(note["Text"]) > 512 or len(note["UpdatedBy"]) > 512:
            return "Note.Text and Note.UpdatedBy are at most 512 characters"
    status = (request.get("Workflow") or {}).get("Status")
    if "Workflow" in request and status not in ("NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"):
        return f"Workflow.Status {status!r} is not a workflow status"
    updatable = ("Note", "Workflow", "UserDefinedFields", "Severity", "VerificationState",
                 "Confidence", "Criticality", "Types", "RelatedFindings")
    if not any(k in request for k in updatable):
        return "nothing to update"
    return None


def _security_hub_updates(app):
    """BatchUpdateFindings, which moto 5.2.5 lacks (see the module's doc)."""
    from moto.iam.models import get_account_id_from
    from moto.securityhub.models import securityhub_backends

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") != "/findings/batchupdate" or environ.get("REQUEST_METHOD") != "PATCH":
            return app(environ, start_response)
        access_key, region, service = _signature_facts(environ)
        if service != "securityhub":
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        request = json.loads(body or b"{}")
        refused = _batch_update_refusal(request)
        if refused:
            answer = json.dumps({"__type": "InvalidInputException", "Message": refused}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/json"),
                                               ("x-amzn-ErrorType", "InvalidInputException"),
                                               ("Content-Length", str(len(answer)))])
            return [answer]
        backend = securityhub_backends[get_account_id_from(access_key)][region]
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        processed, unprocessed = [], []
        for identifier in request.get("FindingIdentifiers", []):
            finding = next((f for f in backend.findings
                            if f.id == identifier.get("Id")
                            and f.data.get("ProductArn") == identifier.get("ProductArn")), None)
            if finding is None:
                unprocessed.append({"FindingIdentifier": identifier, "ErrorCode": "FindingNotFound",
                                    "ErrorMessage": "Finding Not Found"})
                continue
            if "Workflow" in request:
                finding.data["Workflow"] = dict(request["Workflow"])
                finding.data["WorkflowState"] = request["Workflow"].get("Status")
            if "Note" in request:
                finding.data["Note"] = dict(request["Note"], UpdatedAt=now)
            if "UserDefinedFields" in request:
                fields = dict(finding.data.get("UserDefinedFields") or {})
                fields.update(request["UserDefinedFields"])
                finding.data["UserDefinedFields"] = fields
            processed.append(identifier)
        answer = json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
        return [answer]

    return wrapped


_CBOR_PATH = re.compile(r"^/service/GraniteServiceVersion20100801/operation/([A-Za-z]+)$")


def _cloudwatch_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("cloudwatch")


def _typed(value, shape):
    """A JSON protocol value as Smithy RPC v2 CBOR carries it."""
    import cbor2

    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {name: _typed(value[name], shape.members.get(name))
                for name in value if name in shape.members}
    if kind == "list":
        return [_typed(v, shape.member) for v in value]
    if kind == "map":
        return {k: _typed(v, shape.value) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return cbor2.CBORTag(1, float(value))
    if kind in ("double", "float"):
        return float(value)
    if kind in ("integer", "long"):
        return int(value)
    return value


def _plain(value):
    """A CBOR request value as CloudWatch's JSON protocol carries it."""
    import base64
    import cbor2

    if isinstance(value, cbor2.CBORTag):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _cloudwatch_cbor(app):
    """CloudWatch's RPC v2 CBOR requests, answered by moto's JSON protocol."""
    import io

    import cbor2

    model = _cloudwatch_model()

    def wrapped(environ, start_response):
        match = _CBOR_PATH.match(environ.get("PATH_INFO", ""))
        if not match or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        operation = match.group(1)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = _plain(cbor2.loads(raw)) if raw else {}
        body = json.dumps(request).encode()
        environ = dict(environ)
        environ.update({
            "PATH_INFO": "/",
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_X_AMZ_TARGET": f"GraniteServiceVersion20100801.{operation}",
            "wsgi.input": io.BytesIO(body),
        })
        environ.pop("HTTP_SMITHY_PROTOCOL", None)
        status = {}

        def capture(code, headers, exc_info=None):
            status["code"] = code
            return lambda data: None

        answer = b"".join(app(environ, capture))
        code = status.get("code", "500 Internal Server Error")
        decoded = json.loads(answer) if answer.strip() else {}
        if code.startswith("2"):
            shape = model.operation_model(operation).output_shape
            payload = _typed(decoded, shape) if shape is not None else {}
        else:
            payload = {"__type": str(decoded.get("__type", "InternalFailure")).split("#")[-1],
                       "message": decoded.get("message") or decoded.get("Message", "")}
        out = cbor2.dumps(payload)
        start_response(code, [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"),
                              ("Content-Length", str(len(out)))])
        return [out]

    return wrapped


def _unimplemented_as_unknown(app):
    """An operation moto has not implemented at all ("The X action has not
    been implemented"), answered as AWS answers an operation it does not
    know (400 InvalidAction; UnknownOperationException in the JSON
    protocols), not as moto's bare 500, which clients take for an outage and
    retry. Any other gap of moto (a filter, a parameter it does not model)
    still fails loudly as a 500: it must never pass as a refusal."""

    def wrapped(environ, start_response):
        try:
            return app(environ, start_response)
        except NotImplementedError as err:
            if not str(err).endswith("action has not been implemented"):
                raise
            message = f"not implemented by the emulator: {err}"
            scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
            service = scope.group(1) if scope else ""
            if "json" in environ.get("CONTENT_TYPE", ""):
                body = json.dumps({"__type": "UnknownOperationException", "message": message}).encode()
                kind = "application/x-amz-json-1.1"
            elif service == "ec2":
                body = (
                    "<Response><Errors><Error><Code>InvalidAction</Code>"
                    f"<Message>{message}</Message></Error></Errors><RequestID>bench</RequestID></Response>"
                ).encode()
                kind = "text/xml"
            elif service == "s3":
                body = f"<Error><Code>NotImplemented</Code><Message>{message}</Message></Error>".encode()
                kind = "application/xml"
            else:
                body = (
                    "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>"
                    f"<Message>{message}</Message></Error><RequestId>bench</RequestId></ErrorResponse>"
                ).encode()
                kind = "text/xml"
            start_response("400 Bad Request", [("Content-Type", kind), ("Content-Length", str(len(body)))])
            return [body]

    return wrapped


def _s3_versioning_root(app):
    """GetBucketVersioning answered as AWS does: moto names the root element
    GetBucketVersioningResponse, which no SDK parses; AWS's is
    VersioningConfiguration (the S3 API reference)."""

    def wrapped(environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if environ.get("REQUEST_METHOD") != "GET" or "versioning" not in query.split("&"):
            return app(environ, start_response)
        status = {}

        def capture(code, headers, exc_info=None):
            status["code"], status["headers"] = code, headers
            return lambda data: None

        answer = b"".join(app(environ, capture))
        answer = answer.replace(b"GetBucketVersioningResponse", b"VersioningConfiguration")
        headers = [(k, v) for k, v in status.get("headers", []) if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer))))
        start_response(status.get("code", "500 Internal Server Error"), headers)
        return [answer]

    return wrapped


def _serve_tls(port: int, app) -> None:
    """The same app over HTTPS on `port` (S3's only scheme for the product)."""
    from werkzeug.serving import make_server

    tls = tls_files(os.environ["EC2_FORENSICS_BENCH_TLS_DIR"])
    server_ = make_server("127.0.0.1", port, app, threaded=True, ssl_context=tls)
    threading.Thread(target=server_.serve_forever, daemon=True).start()


def _evidence_disk() -> None:
    """Builds the stand-in disk once per version of evidence-disk.sh (a bench
    is started per test; they share it, read-only: each command gets a copy)."""
    if os.environ.get("EC2_FORENSICS_BENCH_DISK_IMAGE"):
        return
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evidence-disk.sh")
    with open(script, "rb") as f:
        version = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), "ec2-forensics-bench")
    os.makedirs(cache, exist_ok=True)
    image = os.path.join(cache, f"evidence-disk-{version}.img")
    if not os.path.exists(image):
        building = f"{image}.{os.getpid()}"
        subprocess.run(["bash", script, building], check=True, stdout=subprocess.DEVNULL)
        os.replace(building, image)
    os.environ["EC2_FORENSICS_BENCH_DISK_IMAGE"] = image


if __name__ == "__main__":
    _evidence_disk()
    if os.environ.get("EC2_FORENSICS_BENCH_URL_PORT"):
        _function_url_server(int(os.environ["EC2_FORENSICS_BENCH_URL_PORT"]),
                             os.environ["EC2_FORENSICS_BENCH_LAMBDA_ENDPOINT"])
    _serve = server.run_simple
    record = os.environ.get("EC2_FORENSICS_BENCH_RECORD")

    def _naming_run(app):
        """Answers GET /ec2-forensics-bench/run with EC2_FORENSICS_BENCH_RUN_ID:
        stack.sh asks, to know the server on its port is this one."""
        run_id = os.environ.get("EC2_FORENSICS_BENCH_RUN_ID", "").encode()

        def wrapped(environ, start_response):
            if environ.get("PATH_INFO") == "/ec2-forensics-bench/run":
                start_response("200 OK", [("content-type", "text/plain"), ("content-length", str(len(run_id)))])
                return [run_id]
            return app(environ, start_response)
        return wrapped

    def _bench_app(app):
        app = _naming_run(_checking_s3(_security_hub_updates(_s3_versioning_root(_unimplemented_as_unknown(app)))))
        return _cloudwatch_cbor(_recording(app, record) if record else app)

    def _run_simple(host, port, app, **kw):
        app = _bench_app(app)
        if os.environ.get("EC2_FORENSICS_BENCH_TLS_PORT"):
            _serve_tls(int(os.environ["EC2_FORENSICS_BENCH_TLS_PORT"]), app)
        return _serve(host, port, app, **kw)

    server.run_simple = _run_simple
    server.main(sys.argv[1:])
