import os, signal, subprocess, sys
server = subprocess.Popen([sys.executable, "run_server.py", *sys.argv[1:]], start_new_session=True)
def stop(signum, frame):
    try:
        os.killpg(server.pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while True:
    pid, status = os.wait()
    if pid == server.pid:
        code = os.waitstatus_to_exitcode(status)
        sys.exit(code if code >= 0 else 128 - code)
