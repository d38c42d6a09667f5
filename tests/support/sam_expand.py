"""Expands template.yaml with AWS's own SAM translator (aws-sam-translator, what `sam deploy`
runs), and prints the parts the tests check as one JSON object: the HTTP API stage's default
route settings, every IAM statement of each function's role, and each function's environment. CodeUri is set to an S3 URI
first, as `sam package` would."""

import json
import os
import sys

from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


class NoManagedPolicies:
    def load(self):
        return {}


template, _ = decode_str(open(sys.argv[1]).read())
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = "s3://bucket/key.zip"
expanded = transform(template, {"SenderAddress": "notify@example.com"}, NoManagedPolicies())
resources = expanded["Resources"]
stages = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
roles = {}
for name, resource in resources.items():
    if resource["Type"] == "AWS::IAM::Role":
        statements = []
        for policy in resource["Properties"].get("Policies", []):
            statements.extend(policy["PolicyDocument"]["Statement"])
        roles[name] = statements
variables = {
    name: r["Properties"].get("Environment", {}).get("Variables", {})
    for name, r in resources.items()
    if r["Type"] == "AWS::Lambda::Function"
}
print(json.dumps({"stages": stages, "roles": roles, "variables": variables}))
