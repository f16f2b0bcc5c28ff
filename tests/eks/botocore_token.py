"""Prints the EKS token botocore makes, as `aws eks get-token` does, for fixed inputs.

Usage: botocore_token.py ACCESS_KEY SECRET_KEY SESSION_TOKEN REGION CLUSTER UNIX_TIME
Run with the tools venv's Python (botocore comes with the SAM CLI).
"""

import base64
import datetime
import os
import sys
from unittest import mock

# botocore's own SigV4 signer (with awscrt installed it would sign through CRT instead).
os.environ["BOTO_DISABLE_CRT"] = "true"

import botocore.session  # noqa: E402

access_key, secret_key, session_token, region, cluster, unix_time = sys.argv[1:]
frozen = datetime.datetime.fromtimestamp(int(unix_time), tz=datetime.timezone.utc).replace(tzinfo=None)

session = botocore.session.get_session()
session.set_credentials(access_key, secret_key, session_token or None)
sts = session.create_client("sts", region_name=region)


def cluster_param(params, **_):
    params.pop("x-k8s-aws-id", None)


def cluster_header(request, **_):
    request.headers["x-k8s-aws-id"] = cluster


sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", cluster_param)
sts.meta.events.register("before-sign.sts.GetCallerIdentity", cluster_header)

with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={"x-k8s-aws-id": cluster}, ExpiresIn=60, HttpMethod="GET"
    )
print("k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("="))
