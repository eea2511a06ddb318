#!/usr/bin/env python3
"""Create the forensic account's side in the local emulator: the evidence keys, the locked bucket, the approval topic.

Usage: forensic.py ENDPOINT_URL [--region R] [--name NAME] [--env]

Prints what it made as JSON, or with --env as the responder's environment
variables (KEY=VALUE lines), which infra/local/stack.sh hands to the Lambdas.
"""

import argparse
import json
import sys

import boto3

ACCOUNT = "123456789012"


def create_forensic_side(kms, s3, sns, sqs, name):
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
            "approvalTopicArn": topic, "approvalInboxUrl": inbox}


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
    forensic = create_forensic_side(*(boto3.client(s, **session) for s in ("kms", "s3", "sns", "sqs")),
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
