#!/usr/bin/env python3
"""Deploy infra/aws/template.yaml into the local emulator's CloudFormation, as SAM would.

Usage: deploy_stack.py ENDPOINT_URL [--stack NAME]   (run with .venv-sam's python: aws-sam-translator)

The template is translated by aws-sam-translator (what `sam deploy` runs
server-side as the Serverless transform), the functions' code is a placeholder
zip in the emulator's S3 (the emulator cannot run a Lambda without Docker, so
the real code is not needed to create the stack), and the stack is created in
moto. Resources moto's CloudFormation does not implement are left out and
named in the output (AWS::SecurityHub::ActionTarget: its ARN is substituted),
and a state machine's DefinitionSubstitutions, which moto ignores, become the
equivalent Fn::Sub.
Prints JSON: the stack status, what was left out, every resource, the
functions, the rules with their targets, and the state machine's definition
as deployed.
"""

import argparse
import io
import json
import os
import sys
import time
import zipfile

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ACCOUNT, REGION = "123456789012", "us-east-1"
CODE_BUCKET = "ec2-forensics-deploy"

# Resource types moto 5.2.5's CloudFormation cannot create, and what stands in for a reference to them.
NOT_IN_EMULATOR = {
    "AWS::SecurityHub::ActionTarget":
        lambda logical, props: f"arn:aws:securityhub:{REGION}:{ACCOUNT}:action/custom/{props['Id']}",
    # A function URL: the test bench serves it (moto_bench.py, with SigV4 checked).
    "AWS::Lambda::Url":
        lambda logical, props: f"https://{logical.lower()}.lambda-url.{REGION}.on.aws/",
}


class ManagedPolicies:
    """The AWS managed policies SAM attaches, by name (the translator asks IAM otherwise)."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
            "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
        }


def translated():
    with open(os.path.join(ROOT, "infra/aws/template.yaml")) as f:
        template = yaml_parse(f.read())
    template["Globals"]["Function"].pop("CodeUri", None)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = {"Bucket": CODE_BUCKET, "Key": "bootstrap.zip"}
        if resource["Type"] == "AWS::Serverless::StateMachine":
            # `sam package` uploads the definition (DefinitionS3Location); moto's
            # CloudFormation reads only an inline definition: the same file, inline.
            uri = resource["Properties"].pop("DefinitionUri")
            with open(os.path.join(ROOT, "infra/aws", uri)) as f:
                resource["Properties"]["Definition"] = json.load(f)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return transform(template, {}, ManagedPolicies())


# moto's Fn::Sub with a variable map runs Python's string.Template once per
# variable, which reads `$$` as an escaped `$` (CloudFormation leaves `$$`
# alone; its escape is `${!`). A context path (`$$.Execution.Id`) would reach
# the deployed definition as `$.Execution.Id`. It is stored under this marker
# and tests/deployed_stack.rs puts `$$` back.
CONTEXT_MARKER = "EC2FORENSICS-CONTEXT-OBJECT"


def substitute_definitions(template):
    """moto's CloudFormation ignores a state machine's DefinitionSubstitutions:
    the same substitution, done by CloudFormation's own Fn::Sub (context
    paths kept under CONTEXT_MARKER)."""
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::StepFunctions::StateMachine" or "DefinitionSubstitutions" not in properties:
            continue
        definition = properties["DefinitionString"]
        if isinstance(definition, dict) and "Fn::Join" in definition:
            separator, parts = definition["Fn::Join"]
            assert all(isinstance(p, str) for p in parts), "a literal definition"
            definition = separator.join(parts)
        definition = definition.replace("$$.", CONTEXT_MARKER + ".")
        properties["DefinitionString"] = {"Fn::Sub": [definition, properties.pop("DefinitionSubstitutions")]}
    return template


def leave_out_unsupported(template):
    left_out = {}
    for logical, resource in list(template["Resources"].items()):
        stand_in = NOT_IN_EMULATOR.get(resource["Type"])
        if stand_in:
            left_out[logical] = {"type": resource["Type"], "standIn": stand_in(logical, resource["Properties"])}
            del template["Resources"][logical]
    text = json.dumps(template)
    for logical, what in left_out.items():
        for form in ({"Ref": logical}, {"Fn::GetAtt": [logical, "ActionTargetArn"]}, {"Fn::GetAtt": [logical, "Arn"]},
                     {"Fn::GetAtt": [logical, "FunctionUrl"]}):
            text = text.replace(json.dumps(form), json.dumps(what["standIn"]))
    return json.loads(text), left_out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("--stack", default="ec2-forensics")
    args = parser.parse_args()
    session = {"endpoint_url": args.endpoint, "region_name": REGION,
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3, cfn = boto3.client("s3", **session), boto3.client("cloudformation", **session)

    template, left_out = leave_out_unsupported(substitute_definitions(translated()))
    s3.create_bucket(Bucket=CODE_BUCKET)
    placeholder = io.BytesIO()
    with zipfile.ZipFile(placeholder, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    s3.put_object(Bucket=CODE_BUCKET, Key="bootstrap.zip", Body=placeholder.getvalue())
    s3.put_object(Bucket=CODE_BUCKET, Key="template.json", Body=json.dumps(template))
    cfn.create_stack(StackName=args.stack, Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
                     TemplateURL=f"https://{CODE_BUCKET}.s3.amazonaws.com/template.json")
    for _ in range(120):
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.5)

    resources = {r["LogicalResourceId"]: {"type": r["ResourceType"], "physicalId": r.get("PhysicalResourceId"),
                                          "status": r["ResourceStatus"]}
                 for r in cfn.list_stack_resources(StackName=args.stack)["StackResourceSummaries"]}
    lam, events, sfn = (boto3.client(s, **session) for s in ("lambda", "events", "stepfunctions"))
    functions = []
    for logical, r in resources.items():
        if r["type"] == "AWS::Lambda::Function":
            c = lam.get_function_configuration(FunctionName=r["physicalId"])
            functions.append({"logicalId": logical, "name": c["FunctionName"], "arn": c["FunctionArn"],
                              "runtime": c.get("Runtime"), "architectures": c.get("Architectures"),
                              "memorySize": c.get("MemorySize"), "handler": c.get("Handler"),
                              "role": c.get("Role"), "tracing": c.get("TracingConfig", {}).get("Mode")})
    rules = []
    for logical, r in resources.items():
        if r["type"] == "AWS::Events::Rule":
            name = r["physicalId"].split("/")[-1].split("|")[-1]
            rule = events.describe_rule(Name=name)
            targets = events.list_targets_by_rule(Rule=name)["Targets"]
            rules.append({"logicalId": logical, "name": name, "state": rule.get("State"),
                          "pattern": json.loads(rule["EventPattern"]) if rule.get("EventPattern") else None,
                          "schedule": rule.get("ScheduleExpression"), "targets": [t["Arn"] for t in targets]})
    machines = [r for r in resources.values() if r["type"] == "AWS::StepFunctions::StateMachine"]
    machine = sfn.describe_state_machine(stateMachineArn=machines[0]["physicalId"]) if machines else {}
    json.dump({
        "status": stack["StackStatus"], "reason": stack.get("StackStatusReason"), "leftOut": left_out,
        "resources": resources, "functions": functions, "rules": rules,
        "stateMachine": {"arn": machine.get("stateMachineArn"), "definition": json.loads(machine.get("definition", "{}")),
                         "tracing": machine.get("tracingConfiguration"), "logging": machine.get("loggingConfiguration")},
    }, sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
