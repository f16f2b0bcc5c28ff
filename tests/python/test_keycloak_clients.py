"""The published clients, unmodified, with real Keycloak tokens: the stack (scripts/dev) checks
tokens against the realm's keys (tests/keycloak/ndp-realm.json), as docs/keycloak.md sets it up."""

import stat
from pathlib import Path

import pytest
import requests
from ndp_ep import APIClient
from rexec.client_api import remote_func

from conftest import Api, dev_stack

REQUIREMENTS = ["python==3.11", "numpy>=1.26"]


@pytest.fixture(scope="module")
def api(control_plane, keycloak, tmp_path_factory):
    settings = {"AUTH_ISSUER": keycloak.issuer(), "AUTH_AUDIENCE": "rexec-lambda",
                "AUTH_ALLOWED_CLIENTS": "notebook,ndp-tests,kubeslice-automation",
                "GROUP_NAMES": "/ndp_ep/ep-test", "ADMIN_GROUP_NAMES": "/ndp_ep/admins"}
    log = tmp_path_factory.mktemp("keycloak-stack") / "scripts-dev.log"
    with dev_stack(control_plane, settings, log) as stack:
        yield Api(stack.base)


def get(url: str, token: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_scientist_with_a_keycloak_token(api, keycloak):
    token = keycloak.password_grant("alice")
    client = APIClient(base_url=api.ndp, token=token)
    assert client._fetch_rexec_deployment_api_url() == api.rexec

    created = client.setup_rexec_environment(REQUIREMENTS)
    assert (created["Username"], created["NDP_Endpoint_membership"]) == ("alice", "/ndp_ep/ep-test")
    assert created["outcome"] == "created"
    assert (created["server"]["stage"], created["server"]["ready"]) == ("ready", True)
    assert (remote_func.broker_addr, int(remote_func.broker_port)) == ("127.0.0.1", 5559)

    server = get(f"{api.rexec}/server", token)
    assert server.status_code == 200 and server.json()["requirements"] == REQUIREMENTS
    broker = get(f"{api.rexec}/broker-config", token)
    assert broker.status_code == 200
    assert broker.json()["broker_external_url"] == "127.0.0.1:5559"

    assert client.terminate_rexec_environment()["deleted"] is True
    after = get(f"{api.rexec}/server", token)
    assert after.status_code == 404 or after.json()["phase"] == "Terminating"


def test_a_user_in_no_allowed_group_is_refused(api, keycloak):
    answer = get(f"{api.rexec}/server", keycloak.password_grant("eve"))
    assert answer.status_code == 403, answer.text


def test_a_machine_user_spawns_and_terminates_its_own_server(api, keycloak):
    token = keycloak.client_credentials("kubeslice-automation")
    client = APIClient(base_url=api.ndp, token=token)
    created = client.setup_rexec_environment(REQUIREMENTS)
    assert created["Username"] == "service-account-kubeslice-automation"
    assert created["outcome"] == "created"
    assert get(f"{api.rexec}/server", token).json()["ready"] is True
    assert client.terminate_rexec_environment()["deleted"] is True
    # Its server was its own: a scientist's token finds none of it.
    assert get(f"{api.rexec}/server", keycloak.password_grant("ann")).status_code == 404


def test_a_machine_user_of_a_client_not_allowed_is_refused(api, keycloak):
    answer = get(f"{api.rexec}/server", keycloak.client_credentials("unlisted-automation"))
    assert answer.status_code == 401
    assert answer.json()["detail"] == "The token was refused: the token was issued to a client that is not allowed."


def test_an_administrator_by_keycloak_group_lists_every_server(api, keycloak):
    assert get(f"{api.rexec}/servers", keycloak.password_grant("ann")).status_code == 200
    assert get(f"{api.rexec}/servers", keycloak.password_grant("alice")).status_code == 403


def test_the_administrators_password_is_in_its_file_only(keycloak):
    password_file = Path(keycloak.ready["admin"]["password_file"])
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text()
    assert len(password) >= 20
    assert password not in keycloak.log.read_text()
