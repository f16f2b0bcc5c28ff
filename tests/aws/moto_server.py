"""moto's server (`moto_server`'s arguments), checking the signature of a request without a body
as AWS does: over the empty payload. moto 5.2.5 signs such a request over its headers instead
(with no query string and no body, it takes the headers for the request's parameters), so it
refuses every correctly signed REST `GET`, botocore's as well as ours: `eks:DescribeCluster`
among them. Requests with a body are checked as moto checks them. Run with the tools venv's
Python."""

import sys

from moto.iam import access_control
from moto.server import main

_create_aws_request = access_control.IAMRequest._create_aws_request


def create_aws_request(self):
    request = _create_aws_request(self)
    if not self._body:
        request.data = b""
    return request


access_control.IAMRequest._create_aws_request = create_aws_request

if __name__ == "__main__":
    sys.exit(main())
