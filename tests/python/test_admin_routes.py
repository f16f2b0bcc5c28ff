"""The administrators' routes through the session's stack, on the real control plane: bob (in
ADMIN_GROUP_NAMES) lists every caller's server, reads user-002's and removes it, each call of
list-servers, get-server and delete-server made as that function's own Kubernetes identity;
user-002, an allowed user, and eve, in no allowed group, are refused."""

import time

import requests


def test_an_administrator_lists_reads_and_removes_another_callers_server(api, identity):
    caller, bob, eve = (identity.token(user) for user in ("user-002", "bob", "eve"))
    spawned = requests.post(f"{api.rexec}/spawn", data={"requirments": ["python==3.11", "six"], "token": caller},
                            timeout=60)
    assert spawned.status_code in (200, 201), spawned.text
    as_bob = {"Authorization": f"Bearer {bob}"}

    servers, token = [], None
    while True:
        page = requests.get(f"{api.rexec}/servers", params={"limit": 1, **({"continue": token} if token else {})},
                            headers=as_bob, timeout=30)
        assert page.status_code == 200, page.text
        servers += page.json()["servers"]
        token = page.json().get("continue")
        if not token:
            break
    mine = [s for s in servers if s.get("username") == "user-002"]
    assert len(mine) == 1, servers
    owner = mine[0]["owner"]
    assert mine[0]["namespace"] == spawned.json()["server"]["namespace"]

    read = requests.get(f"{api.rexec}/servers/{owner}", headers=as_bob, timeout=30)
    assert read.status_code == 200 and read.json()["generation"] == mine[0]["generation"], read.text

    for token, refusal in ((caller, "not_admin"), (eve, None)):
        for method in ("get", "delete"):
            refused = requests.request(method, f"{api.rexec}/servers/{owner}",
                                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert refused.status_code == 403, refused.text
            if refusal:
                assert refused.json()["error"] == refusal

    removed = requests.delete(f"{api.rexec}/servers/{owner}", headers=as_bob, timeout=60)
    assert removed.status_code == 200, removed.text
    # The caller sees their server going, then none.
    deadline = time.monotonic() + 60
    while (mine := requests.get(f"{api.rexec}/server", headers={"Authorization": f"Bearer {caller}"}, timeout=30)).status_code != 404:
        assert mine.status_code == 200 and mine.json()["stage"] == "terminating", mine.text
        assert time.monotonic() < deadline, "the server never went"
        time.sleep(0.5)
