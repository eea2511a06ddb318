#!/usr/bin/env python3
"""Create the forensic account's side in the local emulator: the evidence keys, the locked bucket, the approval topic, the host-script document and tools.

Usage: forensic.py ENDPOINT_URL [--region R] [--name NAME] [--env]

Prints what it made as JSON, or with --env as the responder's environment
variables (KEY=VALUE lines), which infra/local/stack.sh hands to the Lambdas.
"""

import argparse
import base64
import hashlib
import json
import os
import sys

import boto3
import yaml

ACCOUNT = "123456789012"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script_document():
    """The SSM document exactly as infra/aws/template.yaml declares it (the
    one definition; its content uses no CloudFormation function)."""
    class Template(yaml.SafeLoader):
        pass

    Template.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(ROOT, "infra/aws/template.yaml")) as f:
        template = yaml.load(f, Loader=Template)
    return template["Resources"]["RunScriptDocument"]["Properties"]["Content"]


def publish_tool(s3, bucket, key, path):
    """Puts a tool under tools/ with its SHA-256 checksum, as `make
    publish-tools` does in AWS; returns the hex SHA-256."""
    with open(path, "rb") as f:
        body = f.read()
    digest = hashlib.sha256(body).digest()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                  ChecksumSHA256=base64.b64encode(digest).decode())
    return digest.hex()


def create_host_tools(ssm, s3, bucket, name):
    """The run-script document and the tools a host downloads: the shipped
    capture script and, standing in for AVML, infra/local/avml-stand-in.sh."""
    document = f"{name}-run-script"
    ssm.create_document(Name=document, Content=json.dumps(run_script_document()),
                        DocumentType="Command", DocumentFormat="JSON")
    publish_tool(s3, bucket, "tools/capture-memory.sh",
                 os.path.join(ROOT, "infra/host/capture-memory.sh"))
    avml = publish_tool(s3, bucket, "tools/avml", os.path.join(ROOT, "infra/local/avml-stand-in.sh"))
    return {"runScriptDocument": document, "avmlSha256": avml}


def create_forensic_side(kms, s3, sns, sqs, ssm, name):
    """The keys for copies, sharing and custody signatures, an Object Lock,
    SSE-KMS evidence bucket, and the approval topic with a queue subscribed
    to it (the local stand-in for the SOC's inbox). Returns their ids."""
    evidence_key = kms.create_key(Description=f"{name} forensic evidence")["KeyMetadata"]["Arn"]
    sharing_key = kms.create_key(Description=f"{name} snapshot sharing")["KeyMetadata"]["Arn"]
    signing_key = kms.create_key(Description=f"{name} custody signing", KeyUsage="SIGN_VERIFY",
                                 KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"]
    bucket = f"{name}-evidence-{ACCOUNT}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                "KMSMasterKeyID": evidence_key},
         "BucketKeyEnabled": True}]})
    topic = sns.create_topic(Name=f"{name}-approvals")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{name}-approvals-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    return {"evidenceKeyArn": evidence_key, "evidenceBucket": bucket,
            "sharingKeyArn": sharing_key, "signingKeyArn": signing_key,
            "approvalTopicArn": topic, "approvalInboxUrl": inbox,
            **create_host_tools(ssm, s3, bucket, name)}


def as_env(forensic):
    """The responder's configuration for this side (GOVERNANCE, one day: a test bench)."""
    return {
        "EVIDENCE_BUCKET": forensic["evidenceBucket"],
        "FORENSIC_KMS_KEY": forensic["evidenceKeyArn"],
        "SHARING_KMS_KEY": forensic["sharingKeyArn"],
        "CUSTODY_SIGNING_KEY": forensic["signingKeyArn"],
        "EVIDENCE_RETENTION_MODE": "GOVERNANCE",
        "EVIDENCE_RETENTION_DAYS": "1",
        "APPROVAL_TOPIC_ARN": forensic["approvalTopicArn"],
        "RUN_SCRIPT_DOCUMENT": forensic["runScriptDocument"],
        "AVML_SHA256": forensic["avmlSha256"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--name", default="local")
    parser.add_argument("--env", action="store_true")
    args = parser.parse_args()
    session = {"endpoint_url": args.endpoint, "region_name": args.region,
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    forensic = create_forensic_side(*(boto3.client(s, **session) for s in ("kms", "s3", "sns", "sqs", "ssm")),
                                    args.name)
    if args.env:
        for key, value in as_env(forensic).items():
            print(f"{key}={value}")
        print(f"APPROVAL_INBOX_URL={forensic['approvalInboxUrl']}")
    else:
        json.dump(forensic, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
