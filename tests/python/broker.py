"""A stand-in for SciDx-rexec-broker on 127.0.0.1: a client port and a server port (ZeroMQ
ROUTER sockets). A client's call `[b"", token, function, arguments]` is checked with the identity
service (Bearer token) and routed to the server whose identity is the token's `sub`; with no such
server connected, the client is told `Server not ready/available for user <sub>.`, as the real
broker says it."""

import threading

import dill
import requests
import zmq


class Broker:
    def __init__(self, identity_url: str | None = None):
        # The identity service's Bearer URL; may be set once the broker listens.
        self.identity_url = identity_url
        self.context = zmq.Context()
        self.clients = self.context.socket(zmq.ROUTER)
        self.servers = self.context.socket(zmq.ROUTER)
        self.servers.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.client_port = self.clients.bind_to_random_port("tcp://127.0.0.1")
        self.server_port = self.servers.bind_to_random_port("tcp://127.0.0.1")
        self.connected: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _sub(self, token: bytes) -> str | None:
        resp = requests.get(self.identity_url, headers={"Authorization": f"Bearer {token.decode()}"}, timeout=10)
        return resp.json().get("sub") if resp.ok else None

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.clients, zmq.POLLIN)
        poller.register(self.servers, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(100))
            if self.servers in ready:
                server, *rest = self.servers.recv_multipart()
                self.connected.add(server)
                if len(rest) == 2:
                    client, value = rest
                    self.clients.send_multipart([client, b"", value])
            if self.clients in ready:
                client, _, token, function, arguments = self.clients.recv_multipart()
                sub = self._sub(token)
                if sub is None:
                    self.clients.send_multipart([client, b"", dill.dumps("Token validation failed.")])
                    continue
                try:
                    self.servers.send_multipart([sub.encode(), client, function, arguments])
                except zmq.ZMQError:
                    self.clients.send_multipart([client, b"", dill.dumps(f"Server not ready/available for user {sub}.")])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.context.destroy(linger=0)
