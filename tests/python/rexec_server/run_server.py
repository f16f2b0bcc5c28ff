"""A stand-in for SciDx-rexec-server's `run_server.py`, served to the pods the tests run: the same
command line (`run_server.py BROKER_ADDR --broker_port PORT`), a ZeroMQ DEALER socket whose
identity is REXEC_USER_ID, a heartbeat on connecting, and each call (`[client, function,
arguments]`, dill) answered with its dill-serialised value. Like the real server it installs no
SIGTERM handler. It imports zmq and dill from the environment the pod built."""

import argparse
import os

import dill
import zmq

parser = argparse.ArgumentParser()
parser.add_argument("broker_addr")
parser.add_argument("--broker_port", default="5560")
parser.add_argument("--heartbeat_interval", type=float, default=3600)
parser.add_argument("-v", "--debug", action="store_true")
args = parser.parse_args()

context = zmq.Context()
socket = context.socket(zmq.DEALER)
socket.setsockopt(zmq.IDENTITY, os.environ["REXEC_USER_ID"].encode())
socket.connect(f"tcp://{args.broker_addr}:{args.broker_port}")
socket.send_multipart([b"heartbeat"])
while True:
    if not socket.poll(timeout=int(args.heartbeat_interval * 1000)):
        socket.send_multipart([b"heartbeat"])
        continue
    client, function, arguments = socket.recv_multipart()
    try:
        value = dill.loads(function)(*dill.loads(arguments))
    except Exception as error:  # the caller sees what went wrong
        value = f"{type(error).__name__}: {error}"
    socket.send_multipart([client, dill.dumps(value)])
