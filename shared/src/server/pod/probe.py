import os, sys
port = int(os.environ["REXEC_BROKER_PORT"])
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        with open(table) as sockets:
            rows = sockets.read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        fields = row.split()
        if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
            sys.exit(0)
sys.exit("no established connection to the broker")
