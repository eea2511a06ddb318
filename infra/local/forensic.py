#!/usr/bin/env python3
"""Create the forensic account's side in the local emulator: the evidence keys, the approval MAC key, the locked bucket, the approval topic, the lease table, the host-script document and tools.

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
# What an instance's SSM agent does with its role (the core of
# AmazonSSMManagedInstanceCore): the bench's agent is Online only with it.
SSM_AGENT_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Resource": "*",
    "Action": ["ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
               "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
               "ssmmessages:OpenDataChannel", "ec2messages:GetMessages",
               "ec2messages:AcknowledgeMessage", "ec2messages:SendReply"]}]})
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script_document():
    """The SSM document as infra/aws/template.yaml declares it (the one
    definition; its content uses no CloudFormation function), unchanged: the
    bench's S3 answers over HTTPS, so its https-only patterns hold here too."""
    class Template(yaml.SafeLoader):
        pass

    Template.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(ROOT, "infra/aws/template.yaml")) as f:
        template = yaml.load(f, Loader=Template)
    content = template["Resources"]["RunScriptDocument"]["Properties"]["Content"]
    return content


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
    host scripts and rules (tools/host/, as `make publish-tools` puts them)
    and, standing in for AVML, infra/local/avml-stand-in.sh."""
    document = f"{name}-run-script"
    ssm.create_document(Name=document, Content=json.dumps(run_script_document()),
                        DocumentType="Command", DocumentFormat="JSON")
    for script in ("capture-memory.sh", "run-forensics.sh", "analyse-volume.sh", "map-device.sh"):
        publish_tool(s3, bucket, f"tools/host/{script}", os.path.join(ROOT, "infra/host", script))
    publish_tool(s3, bucket, "tools/host/rules/crypto-mining.yar",
                 os.path.join(ROOT, "infra/host/rules/crypto-mining.yar"))
    avml = publish_tool(s3, bucket, "tools/avml", os.path.join(ROOT, "infra/local/avml-stand-in.sh"))
    return {"runScriptDocument": document, "avmlSha256": avml}


def create_workstation_side(ec2, iam, ssm, name, region):
    """Where forensic workstations run: the forensic VPC with a private
    subnet in each zone, the workstation's group (no ingress) and instance
    profile, and the golden AMI, published to the parameter
    launch-forensic-instance reads (in AWS, infra/aws/golden-ami.yaml's
    pipeline publishes it)."""
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16", TagSpecifications=[{
        "ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"{name}-forensic"}]}])["Vpc"]["VpcId"]
    subnets = {}
    for index, zone in enumerate(("a", "b"), start=1):
        subnets[f"{region}{zone}"] = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.99.{index}.0/24",
            AvailabilityZone=f"{region}{zone}")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{name}-forensic-workstation", VpcId=vpc,
                                      Description="ec2-forensics workstation: no ingress")["GroupId"]
    role = f"{name}-forensic-workstation"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    profile = iam.create_instance_profile(InstanceProfileName=role)["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    # The golden AMI's SSM agent needs it (infra/aws/template.yaml's workstation
    # role attaches AmazonSSMManagedInstanceCore; moto's server does not load
    # AWS managed policies, so the agent's own actions are attached instead).
    agent = iam.create_policy(PolicyName=f"{role}-ssm-agent", PolicyDocument=SSM_AGENT_POLICY)
    iam.attach_role_policy(RoleName=role, PolicyArn=agent["Policy"]["Arn"])
    base = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                if i.get("Platform") != "windows")
    builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1,
                                SubnetId=subnets[f"{region}a"])["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=builder, Name=f"{name}-forensic-workstation")["ImageId"]
    ec2.terminate_instances(InstanceIds=[builder])
    parameter = f"/{name}/golden-ami"
    ssm.put_parameter(Name=parameter, Type="String", Value=ami)
    return {"forensicVpcId": vpc, "forensicSubnets": subnets, "workstationGroupId": group,
            "workstationProfileArn": profile, "goldenAmiId": ami, "goldenAmiParameter": parameter}


def create_lease_table(neighbour, name, region):
    """The table of open cases per instance, keyed as infra/aws/template.yaml
    declares it, with its time-to-live attribute. `neighbour` is any client
    of the emulator (its endpoint is the table's)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=neighbour.meta.endpoint_url, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    table = f"{name}-case-leases"
    dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "instance", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "instance", "KeyType": "HASH"}])
    dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expiresAt"})
    return table


def create_forensic_side(kms, s3, sns, sqs, ssm, ec2, iam, name, region):
    """The keys for copies, sharing and custody signatures, an Object Lock,
    SSE-KMS evidence bucket, and the approval topic with a queue subscribed
    to it (the local stand-in for the SOC's inbox). Returns their ids."""
    evidence_key = kms.create_key(Description=f"{name} forensic evidence")["KeyMetadata"]["Arn"]
    sharing_key = kms.create_key(Description=f"{name} snapshot sharing")["KeyMetadata"]["Arn"]
    signing_key = kms.create_key(Description=f"{name} custody signing", KeyUsage="SIGN_VERIFY",
                                 KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"]
    approval_mac_key = kms.create_key(Description=f"{name} approval answers", KeyUsage="GENERATE_VERIFY_MAC",
                                      KeySpec="HMAC_256")["KeyMetadata"]["Arn"]
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
    # Where the stack's rules and Lambdas put what they failed on (readiness
    # checks that it is empty).
    dead_letters = sqs.create_queue(QueueName=f"{name}-dead-letters")["QueueUrl"]
    lease_table = create_lease_table(sqs, name, region)
    return {"evidenceKeyArn": evidence_key, "evidenceBucket": bucket, "leaseTable": lease_table,
            "sharingKeyArn": sharing_key, "signingKeyArn": signing_key, "approvalMacKeyArn": approval_mac_key,
            "approvalTopicArn": topic, "approvalInboxUrl": inbox,
            "deadLetterQueueUrl": dead_letters,
            **create_host_tools(ssm, s3, bucket, name),
            **create_workstation_side(ec2, iam, ssm, name, region)}


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
        "GOLDEN_AMI_PARAMETER": forensic["goldenAmiParameter"],
        "FORENSIC_SUBNETS": ",".join(f"{zone}={subnet}" for zone, subnet in forensic["forensicSubnets"].items()),
        "FORENSIC_SECURITY_GROUP": forensic["workstationGroupId"],
        "FORENSIC_INSTANCE_PROFILE": forensic["workstationProfileArn"],
        "FORENSIC_INSTANCE_TYPE": "m5.large",
        "LEASE_TABLE": forensic["leaseTable"],
        "APPROVAL_MAC_KEY": forensic["approvalMacKeyArn"],
        "DEAD_LETTER_QUEUE_URL": forensic["deadLetterQueueUrl"],
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
    forensic = create_forensic_side(*(boto3.client(s, **session)
                                      for s in ("kms", "s3", "sns", "sqs", "ssm", "ec2", "iam")),
                                    args.name, args.region)
    if args.env:
        for key, value in as_env(forensic).items():
            print(f"{key}={value}")
        print(f"APPROVAL_INBOX_URL={forensic['approvalInboxUrl']}")
    else:
        json.dump(forensic, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
