"""What the tests need made on a moto server, made with boto3 (not our code), signed with the
credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.

Usage: fixtures.py ENDPOINT user                -- makes an IAM user allowed everything; prints its
                                               access key id and secret access key, one per line
                                               (three calls: on a server started with
                                               INITIAL_NO_AUTH_ACTION_COUNT=3, the unsigned ones)
       fixtures.py ENDPOINT secret NAME VALUE   -- makes the secret, or puts its new value
       fixtures.py ENDPOINT cluster NAME        -- makes the EKS cluster; prints its endpoint and
                                               CA data as DescribeCluster gives them, as JSON
Run with the tools venv's Python.
"""

import json
import sys

import boto3


def client(service):
    return boto3.client(service, endpoint_url=sys.argv[1], region_name="us-east-1")


def user():
    iam = client("iam")
    iam.create_user(UserName="rexec-function")
    key = iam.create_access_key(UserName="rexec-function")["AccessKey"]
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="rexec-function", PolicyName="everything", PolicyDocument=json.dumps(everything))
    print(key["AccessKeyId"])
    print(key["SecretAccessKey"])


def secret(name, value):
    secrets = client("secretsmanager")
    try:
        secrets.create_secret(Name=name, SecretString=value)
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=name, SecretString=value)


def cluster(name):
    eks = client("eks")
    eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    described = eks.describe_cluster(name=name)["cluster"]
    print(json.dumps({"endpoint": described["endpoint"], "ca": described["certificateAuthority"]["data"]}))


if __name__ == "__main__":
    {"user": user, "secret": secret, "cluster": cluster}[sys.argv[2]](*sys.argv[3:])
