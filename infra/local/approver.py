#!/usr/bin/env python3
"""Make a person who may (or may not) answer the approval gate or start runs, in the local emulator.

Usage: approver.py ENDPOINT_URL NAME [--denied] [--may FUNCTION ...] [--region R]

Creates the IAM user NAME with an access key; without --denied, its inline
policy allows lambda:InvokeFunctionUrl on each function named by --may
(answer-approval when none is: an approver; start-run: a requester), with
lambda:FunctionUrlAuthType AWS_IAM, and lambda:InvokeFunction only through
the URL (lambda:InvokedViaFunctionUrl true): what makes someone an approver,
or a requester, in AWS. Prints AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
APPROVER_ARN (the person's ARN) as KEY=VALUE lines, for the CLI's environment.
"""

import argparse
import json

import boto3

ACCOUNT = "123456789012"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("name")
    parser.add_argument("--denied", action="store_true")
    parser.add_argument("--may", action="append", choices=["answer-approval", "start-run", "cleanup-case"])
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    iam = boto3.client("iam", endpoint_url=args.endpoint, region_name=args.region,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    user = iam.create_user(UserName=args.name)["User"]
    if not args.denied:
        functions = [f"arn:aws:lambda:{args.region}:{ACCOUNT}:function:{name}"
                     for name in (args.may or ["answer-approval"])]
        iam.put_user_policy(UserName=args.name, PolicyName="ec2-forensics-person", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": functions,
                 "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}},
                # Through the URL only: a direct invocation would let the caller
                # write the request context, and with it the person's name.
                {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": functions,
                 "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}},
            ],
        }))
    key = iam.create_access_key(UserName=args.name)["AccessKey"]
    print(f"AWS_ACCESS_KEY_ID={key['AccessKeyId']}")
    print(f"AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
    print(f"APPROVER_ARN={user['Arn']}")


if __name__ == "__main__":
    main()
