"""The published clients, unmodified, driving the Rexec Deployment API served locally."""

import pytest
import requests
from ndp_ep import APIClient
from rexec.client_api import remote_func

REQUIREMENTS = ["python==3.11", "numpy>=1.26"]


def server(api, token):
    return requests.get(
        f"{api.rexec}/server", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_the_whole_lifecycle_with_the_published_clients(api, identity, tmp_path):
    token = identity.token("alice")
    client = APIClient(base_url=api.ndp, token=token)

    created = client.setup_rexec_environment(REQUIREMENTS)
    assert created["Username"] == "alice"
    assert created["NDP_Endpoint_membership"] == "/ndp_ep/ep-dev"
    assert created["outcome"] == "created"
    assert created["server"]["requirements"] == REQUIREMENTS
    # The spawn answered once the server was connected to the broker.
    assert (created["server"]["stage"], created["server"]["ready"]) == ("ready", True)
    # The client kept the broker's address and the spawn route for its later calls.
    assert (remote_func.broker_addr, int(remote_func.broker_port)) == ("127.0.0.1", 5559)
    assert remote_func.rexec_api_url == f"{api.rexec}/spawn"

    reused = client.setup_rexec_environment(list(reversed(REQUIREMENTS)))
    assert reused["outcome"] == "reused"

    conflict = client.setup_rexec_environment(["python==3.11", "pandas"])
    assert conflict["error"] == "different_requirements"
    assert "force_reinstall" in conflict["detail"]

    requirements_file = tmp_path / "requirements.txt"
    requirements_file.write_text("python==3.11\npandas\n")
    replaced = remote_func.set_environment(str(requirements_file), token, force_reinstall=True)
    assert replaced.status_code == 201
    assert replaced.json()["outcome"] == "replaced"
    assert server(api, token).json()["requirements"] == ["python==3.11", "pandas"]

    terminated = client.terminate_rexec_environment()
    assert terminated["deleted"] is True
    after = server(api, token)
    assert after.status_code == 404 or after.json()["phase"] == "Terminating"

    # A new environment right after a terminate: no wait for the old one to go.
    again = client.setup_rexec_environment(REQUIREMENTS)
    assert (again["outcome"], again["server"]["generation"], again["server"]["ready"]) == ("created", 3, True)
    client.terminate_rexec_environment()


def test_terminate_with_a_bad_token_is_refused(api, identity):
    client = APIClient(base_url=api.ndp, token=identity.token("alice"))
    with pytest.raises(ValueError):
        client.terminate_rexec_environment(token="not-a-valid-token")


def test_terminating_nothing_is_still_a_success(api, identity):
    client = APIClient(base_url=api.ndp, token=identity.token("bob"))
    assert client.terminate_rexec_environment()["deleted"] is False


def test_bad_requirements_reach_the_user_as_json(api, identity):
    token = identity.token("bob")
    client = APIClient(base_url=api.ndp, token=token)
    refused = client.setup_rexec_environment(["python==3.11", "pkg @ https://evil.example/pkg.tar.gz"])
    assert refused["error"] == "invalid_requirement"
    assert "line 2" in refused["detail"]
    assert server(api, token).status_code == 404
