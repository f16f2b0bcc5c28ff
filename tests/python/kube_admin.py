"""A cluster's objects as its administrator reads them, with the official `kubernetes` client and
the administrator's kubeconfig (the tests and the benches read what a spawn made through it)."""

import json

import kubernetes


class Admin:
    def __init__(self, kubeconfig: str):
        self.client = kubernetes.config.new_client_from_config(config_file=kubeconfig)

    def get(self, path: str) -> dict:
        """The object at the API path `path`."""
        request = self.client.param_serialize("GET", path, auth_settings=["BearerToken"])
        response = self.client.call_api(*request, _request_timeout=10)
        response.read()
        assert response.status == 200, f"GET {path}: {response.status} {response.data[:500]!r}"
        return json.loads(response.data)
