#!/usr/bin/env python3
"""The deployed templates as plain CloudFormation JSON, for prove.mjs.

Usage: translate.py   (run with .venv-sam's python: aws-sam-translator)

infra/aws/template.yaml goes through aws-sam-translator (what `sam deploy`
runs as the Serverless transform), offline; the other templates are plain
CloudFormation and are only parsed. Prints one JSON object: each template's
file name to its translated body.
"""

import json
import os
import sys

from samtranslator.yaml_helper import yaml_parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "infra/local"))

from deploy_stack import translated  # noqa: E402  (the one SAM translation of the tests)


def main():
    out = {"template.yaml": translated()}
    for name in ("workload-role.yaml", "logging.yaml", "golden-ami.yaml", "forensic-vpc.yaml"):
        with open(os.path.join(ROOT, "infra/aws", name)) as f:
            out[name] = yaml_parse(f.read())
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
