#!/usr/bin/env python3
"""The moto server, with the SSM behaviour the playbook depends on and moto 5.2.5 lacks.

Test bench only: the product talks to it exactly as it talks to AWS. moto
answers DescribeInstanceInformation with HTTP 500, reports every command
`Success` at once with empty output, has no CancelCommand, and names the
root element of its ListParts answer `ListPartsResponse` where S3 says
`ListPartsResult` (boto3 does not mind; the Rust SDK refuses it). Here:

- An instance tagged `ec2-forensics-bench:ssm-agent` = `online` has an SSM
  agent: DescribeInstanceInformation lists it (PingStatus Online, its
  platform), and commands sent to it run. Any other instance is not managed.
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

Environment: EC2_FORENSICS_BENCH_HOST_ROOT, when set, is where the scripts run
(a directory per invocation under it); otherwise a temporary directory.
"""

import datetime
import os
import re
import subprocess
import sys
import tempfile
import threading

import yaml
from moto import server
from moto.ec2.models import ec2_backends
from moto.s3 import responses as s3_responses
from moto.ssm import models, responses
from moto.ssm.exceptions import SSMException, ValidationException

AGENT_TAG = "ec2-forensics-bench:ssm-agent"
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


def _agent_online(instance) -> bool:
    tags = {t["key"]: t["value"] for t in instance.get_tags()}
    return tags.get(AGENT_TAG) == "online" and instance.state == "running"


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


def _run(command, invocation: dict, steps: list, env: dict) -> None:
    root = os.environ.get("EC2_FORENSICS_BENCH_HOST_ROOT")
    workdir = tempfile.mkdtemp(prefix=f"{invocation['InstanceId']}-", dir=root)
    out, err, code = "", "", 0
    invocation.update(Status="InProgress", StatusDetails="InProgress")
    for step in steps:
        lines = step.get("inputs", {}).get("runCommand", [])
        script = "\n".join(lines) if isinstance(lines, list) else str(lines)
        process = subprocess.Popen(
            ["sh", "-c", script],
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
            return
        if code != 0:
            break
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
            threading.Thread(target=_run, args=(command, invocation, steps, env), daemon=True).start()
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
models.SimpleSystemManagerBackend.send_command = send_command
responses.SimpleSystemManagerResponse.describe_instance_information = describe_instance_information
responses.SimpleSystemManagerResponse.cancel_command = cancel_command
responses.SimpleSystemManagerResponse.get_command_invocation = get_command_invocation

if __name__ == "__main__":
    server.main(sys.argv[1:])
