#!/usr/bin/env python3
"""Readable views for the demo.

  show_case.py estate ESTATE.json          what the seed made
  show_case.py event EVENT.json ESTATE.json  the example event, about the seeded victim (JSON on stdout)
  show_case.py case EXECUTION.json         the Case an execution produced
  show_case.py inbox ENDPOINT QUEUE_URL    the approval requests SNS delivered (JSON list of texts)
  show_case.py execution SFN_ENDPOINT ARN  an execution of the local Step Functions API, as `case` shows it
"""

import json
import sys


def estate(path):
    e = json.load(open(path))
    v = e["victim"]
    print(f"    victim {v['instanceId']}: ENIs {', '.join(v['networkInterfaceIds'])}; "
          f"EIP {v['elasticIp']['publicIp']}; volumes {', '.join(v['volumeIds'])} (customer key, aws/ebs, unencrypted)")
    print(f"    in ASG {v['autoScalingGroup']}, target groups on ports "
          f"{', '.join(str(t['port']) for t in v['targetGroups'])}, classic ELB {v['classicLoadBalancer']}, "
          f"profile {v['instanceProfileArn'].rsplit('/', 1)[-1]}")


def event(event_path, estate_path):
    victim = json.load(open(estate_path))["victim"]["instanceId"]
    example = json.load(open(event_path))["detail"]["resource"]["instanceDetails"]["instanceId"]
    # Everywhere the example names its instance (the title too), as tests/harness does.
    sys.stdout.write(open(event_path).read().replace(example, victim))


def case(path):
    run = json.load(open(path))
    c = run.get("output") or {}
    print(f"\nexecution {run['status']}: {' -> '.join(run['states'])}")
    if run.get("error"):
        print(f"  error {run['error']}: {run.get('cause')}")
    if not isinstance(c, dict) or "incident" not in c:
        return
    i, d = c["incident"], c["decision"]
    print(f"\ncase {c['caseId']}")
    print(f"  incident  {i['source']} {i['findingType']} severity {i['severity']} "
          f"account {i.get('account')} region {i['region']} instances {', '.join(i['instanceIds'])}")
    print(f"  decision  {d['action']}: {d['reason']}")
    for m in c.get("metadata", []):
        print(f"\n  metadata of {m['instanceId']} ({m.get('instanceType')}, {m.get('state')}, "
              f"{m.get('availabilityZone')}, AMI {m.get('imageId')}, launched {m.get('launchTime')})")
        for n in m["networkInterfaces"]:
            print(f"    ENI {n['networkInterfaceId']}  {', '.join(n['privateIpAddresses'])}"
                  f"{'  public ' + n['publicIp'] if n.get('publicIp') else ''}  groups {', '.join(n['securityGroupIds'])}")
        for v in m["volumes"]:
            print(f"    volume {v['volumeId']} {v.get('deviceName')} {v.get('sizeGib')} GiB {v.get('volumeType')} "
                  f"encrypted={v.get('encrypted')} key={str(v.get('kmsKeyId')).rsplit('/', 1)[-1]}")
        print(f"    profile {m.get('iamInstanceProfileArn')}  tags {m.get('tags')}")
        console = m.get("consoleOutput")
        if console:
            print(f"    console output {console['bytes']} bytes sha256 {console['sha256'][:16]}...")
        for key in ("consoleOutputUnavailable", "consoleScreenshotUnavailable"):
            if m.get(key):
                print(f"    {key}: {m[key]['reason'][:100]}")
    for section in ("protection", "isolation"):
        for record in c.get(section, []):
            print(f"\n  {section} of {record['instanceId']} (complete: {record['complete']})")
            for a in record["actions"]:
                print(f"    [{a['outcome']:>11}] {a['action']} — {a['target']}")
            for w in record.get("warnings", []):
                print(f"    warning: {w}")
            if record.get("autoScaling"):
                print(f"    auto scaling: {record['autoScaling']['reason']}")
            if record.get("verifiedAt"):
                print(f"    read back and verified at {record['verifiedAt']}")
    summary = c.get("containment")
    if summary:
        verdict = "CONTAINED" if summary["contained"] else "NOT CONTAINED"
        print(f"\n  {verdict} (stage {summary['stage']}, verified {summary.get('verifiedAt')})")
        for why in summary.get("notContained", []):
            print(f"    {why}")
        for n in summary.get("notBlocked", []):
            print(f"    no group or ACL blocks: {n[:100]}...")
    print("\n  chain of custody")
    for e in c.get("custody", []):
        digest = (e.get("sha256") or "")[:16]
        print(f"    {e['at']}  {e['step']:<17} {e['actor']}  {e['action'][:70]}  {digest}")
    for err in c.get("errors", []):
        print(f"  ERROR {err['step']} {err['errorType']}: {err['message']} ({err.get('notDone')})")


def inbox(endpoint, queue_url):
    import boto3
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    texts = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        messages = got.get("Messages", [])
        if not messages:
            break
        for m in messages:
            # SNS wraps what was published in its own JSON envelope.
            envelope = json.loads(m["Body"])
            texts.append(f"{envelope.get('Subject', '')}\n{envelope['Message']}")
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    json.dump(texts, sys.stdout)


def execution(endpoint, arn):
    import boto3
    sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    described = sfn.describe_execution(executionArn=arn)
    history = sfn.get_execution_history(executionArn=arn)["events"]
    states = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    output = json.loads(described.get("output") or "null")
    if output is None:
        exited = [e["stateExitedEventDetails"] for e in history if "stateExitedEventDetails" in e]
        output = json.loads(exited[-1]["output"]) if exited else {}
    run = {"status": described["status"], "output": output, "states": states,
           "error": described.get("error"), "cause": described.get("cause")}
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(run, f)
        path = f.name
    case(path)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"estate": estate, "event": event, "case": case, "inbox": inbox, "execution": execution}[command](*args)
