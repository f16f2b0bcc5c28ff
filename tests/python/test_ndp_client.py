"""The published ndp-ep client, unmodified, against the NDP Endpoint API served locally."""

import warnings

import pytest
import requests
from ndp_ep import APIClient


def test_the_client_reads_a_compatible_api_version(api, identity):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = APIClient(base_url=api.ndp, token=identity.token("alice"))
    assert client.api_version == requests.get(f"{api.ndp}/status/").json()["api_version"]


def test_the_client_finds_the_deployment_api(api, identity):
    client = APIClient(base_url=api.ndp, token=identity.token("alice"))
    assert client._fetch_rexec_deployment_api_url() == api.rexec
    assert client._resolve_rexec_url(api_path="/rexec") == api.rexec


@pytest.mark.parametrize("user", ["eve", None])
def test_the_client_is_refused_without_a_valid_allowed_token(api, identity, user):
    token = identity.token(user) if user else "not-a-token"
    client = APIClient(base_url=api.ndp, token=token)
    with pytest.raises(ValueError):
        client._fetch_rexec_deployment_api_url()


def test_status_answers_with_and_without_the_trailing_slash(api):
    for path in ("/status", "/status/"):
        resp = requests.get(f"{api.ndp}{path}", timeout=10)
        assert resp.status_code == 200
        assert resp.json()["rexec_enabled"] is True


def test_errors_are_json_with_a_request_id(api):
    resp = requests.get(f"{api.ndp}/status/rexec", timeout=10)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = resp.json()
    assert body["error"] == "missing_token"
    assert body["request_id"] == resp.headers["X-Request-Id"]


def test_the_docs_are_served(api):
    doc = requests.get(f"{api.ndp}/openapi.json", timeout=10).json()
    assert "/status/rexec" in doc["paths"]
    for page in ("docs", "redoc"):
        resp = requests.get(f"{api.ndp}/{page}", timeout=10)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/html")
