"""A `credential_process` (the AWS CLI's and SDKs' external credentials, as an SSO helper or a
vault prints them) that counts its calls: appends a line to COUNT_FILE, then prints credentials
that expire SECONDS from now.

Usage: credential_process.py COUNT_FILE ACCESS_KEY_ID SECRET_ACCESS_KEY SECONDS
"""

import datetime
import json
import sys

count_file, key, secret, seconds = sys.argv[1:5]
with open(count_file, "a") as calls:
    calls.write("called\n")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(seconds))
print(json.dumps({
    "Version": 1,
    "AccessKeyId": key,
    "SecretAccessKey": secret,
    "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
}))
