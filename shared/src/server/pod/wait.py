import os, sys, time
root = "/opt/rexec/env"
print("rexec: waiting for the environment's build", flush=True)
shown = 0
while True:
    # The markers are looked for first: the build writes its last lines before its marker.
    ended = [(m, c) for m, c in ((".complete", 0), (".failed", 1)) if os.path.exists(os.path.join(root, m))]
    try:
        with open(os.path.join(root, ".log"), "rb") as log:
            log.seek(shown)
            output = log.read()
    except FileNotFoundError:
        output = b""
    if output:
        shown += len(output)
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    for marker, code in ended:
        with open(os.path.join(root, marker)) as found:
            text = found.read()
        with open("/dev/termination-log", "w") as out:
            out.write(text[-3000:])
        sys.exit(code)
    time.sleep(0.5)
