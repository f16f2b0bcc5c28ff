import collections, hashlib, io, json, os, platform, shutil, subprocess, sys, tarfile, urllib.request
from importlib import metadata
root = "/opt/rexec/env"
# A directory that holds anything was built into before, and may be in use: never again.
if os.listdir(root):
    with open("/dev/termination-log", "w") as out:
        out.write("the build's directory is not empty\n")
    sys.exit(1)
# The build's output, kept with it: the servers' wait for the build follows it.
log = open(os.path.join(root, ".log"), "a")
def say(line):
    sys.stdout.write(line)
    log.write(line[:500].rstrip("\n") + "\n")
    log.flush()
def finish(marker, text, code):
    with open(os.path.join(root, marker), "w") as out:
        out.write(text)
    with open("/dev/termination-log", "w") as out:
        out.write(text[-3000:])
    sys.exit(code)
def fail(text):
    say(text)
    finish(".failed", text, 1)
url = os.environ["REXEC_SERVER_SOURCE"]
expected = os.environ["REXEC_SERVER_SOURCE_SHA256"]
say("rexec: fetching the rexec-server source\n")
try:
    data = urllib.request.urlopen(url, timeout=120).read()
except OSError as error:
    fail("the rexec-server source cannot be fetched: " + str(error) + "\n")
digest = hashlib.sha256(data).hexdigest()
if digest != expected:
    fail("rexec-server source: sha256 " + digest + " is not REXEC_SERVER_SOURCE_SHA256\n")
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    members = [m for m in archive.getmembers() if "/" in m.name]
    for m in members:
        m.name = m.name.split("/", 1)[1]
    archive.extractall(os.path.join(root, "server"), members=members, filter="data")
target = os.path.join(root, "packages")
cache = os.path.join(root, ".cache")
installer = os.environ["REXEC_INSTALLER"]
if installer == "uv":
    # A cache in the build's own directory, so that the packages are hard-linked, not copied.
    command = ["uv", "pip", "install", "--cache-dir", cache, "--link-mode", "hardlink", "--python", sys.executable]
else:
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off"]
command += ["--target", target, "-r", "/opt/rexec/requirements/server-requirements.txt", "-r", "/opt/rexec/requirements/requirements.txt"]
say("rexec: installing the requirements with " + installer + "\n")
process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
tail = collections.deque(maxlen=25)
for line in process.stdout:
    say(line)
    tail.append(line)
process.wait()
shutil.rmtree(cache, ignore_errors=True)
if process.returncode != 0:
    finish(".failed", "".join(tail), process.returncode)
# What the build wrote, each file once (hard links share their blocks), against its bound.
limit = int(os.environ["REXEC_BUILD_MAX_BYTES"])
used, seen = 0, set()
for folder, _, files in os.walk(root):
    for name in files:
        found = os.lstat(os.path.join(folder, name))
        if (found.st_dev, found.st_ino) not in seen:
            seen.add((found.st_dev, found.st_ino))
            used += found.st_blocks * 512
if used > limit:
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    fail("the environment takes " + str(used) + " bytes, more than REXEC_BUILD_MAX_SIZE allows (" + str(limit) + ")\n")
versions = {"python": platform.python_version()}
for name in ("dill", "scidx-rexec"):
    found = list(metadata.distributions(name=name, path=[target]))
    versions[name] = found[0].version if found else None
finish(".complete", json.dumps(versions), 0)
