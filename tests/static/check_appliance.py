#!/usr/bin/env python3
"""Static-link check and end-to-end run of examples/edge_appliance (ctest label "static").

  check_appliance.py APPLIANCE SINK_PY WFCTL

1. readelf -d: the binary has no NEEDED entry for libwfengine.so nor for the
   dependencies linked from their static archives (SQLite, libuv, mbedTLS,
   http-parser); ldd: none of them is loaded indirectly either (one SQLite).
2. Against scripts/webhook_sink.py on 127.0.0.1 (it verifies Standard Webhooks
   signatures with Python's hmac):
   - 5 simulated readings: 5 signed requests whose bodies are the readings,
     webhook-id = the reading's key; the heartbeat schedule is registered
     (wfctl schedules show);
   - the same 5 again on the same file: duplicates, nothing sent;
   - a readings file with a bad line: exit 2, the good line delivered;
   - an outage (the sink answers 503): exit 3 at the deadline, the readings
     stay queued and a second run delivers them signed;
   - readings on standard input with a per-second heartbeat: both delivered,
     the heartbeat fires, SIGTERM drains and closes (exit 0).
Waits are on conditions (sink lines, process exit), each bounded.
"""
import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

APPLIANCE, SINK_PY, WFCTL = sys.argv[1:4]
STATIC_LIBS = ("libwfengine", "libsqlite3", "libuv", "libmbedcrypto", "libmbedtls",
               "libmbedx509", "libhttp_parser")
WAIT_S = 60  # bound for every wait on a condition

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


# ---------------------------------------------------------------- 1. linking
def needed(path):
    out = subprocess.run(["readelf", "-d", path], check=True, capture_output=True,
                         text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


libs = needed(APPLIANCE)
print("NEEDED:", " ".join(libs))
for lib in STATIC_LIBS:
    check(not any(n.startswith(lib + ".") or n.startswith(lib + "-") for n in libs),
          "not NEEDED: " + lib)
syms = subprocess.run(["readelf", "-W", "--dyn-syms", "-s", APPLIANCE], check=True,
                      capture_output=True, text=True).stdout
defined = [ln for ln in syms.splitlines() if ln.endswith(" wf_open") and " UND " not in ln]
check(bool(defined), "wf_open is defined in the binary itself")
check(any(ln.endswith(" sqlite3_open_v2") and " UND " not in ln for ln in syms.splitlines()),
      "SQLite is linked into the binary")
ldd = subprocess.run(["ldd", APPLIANCE], check=True, capture_output=True, text=True).stdout
loaded = [ln.split()[0] for ln in ldd.splitlines() if ln.strip()]
for lib in STATIC_LIBS:
    check(not any(n.startswith(lib + ".") for n in loaded), "not loaded indirectly: " + lib)

# -------------------------------------------------------------- 2. the sink
secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
env = dict(os.environ, EDGE_WHSEC=secret)
sink = subprocess.Popen([sys.executable, SINK_PY, "--secret", "env:EDGE_WHSEC"], env=env,
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
reqs = []  # every request the sink reported
cond = threading.Condition()


def read_sink():
    for line in sink.stdout:
        ev = json.loads(line)
        with cond:
            reqs.append(ev)
            cond.notify_all()


threading.Thread(target=read_sink, daemon=True).start()


def wait_for(pred, what):
    deadline = time.monotonic() + WAIT_S
    with cond:
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                check(False, "timed out waiting for " + what)
                return False
            cond.wait(left)
    return True


wait_for(lambda: any(r.get("ev") == "ready" for r in reqs), "the sink to start")
port = next(r["port"] for r in reqs if r.get("ev") == "ready")
base = "http://127.0.0.1:%d" % port


def deliveries(path="/verify"):
    with cond:
        return [r for r in reqs if r.get("ev") == "req" and r["path"] == path]


tmp = tempfile.mkdtemp(prefix="wf_edge_")


def run(db, *args, stdin=None, url=base + "/verify"):
    cmd = [APPLIANCE, "--db", os.path.join(tmp, db), "--url", url, "--allow-private"]
    p = subprocess.run(cmd + list(args), env=env, input=stdin, capture_output=True, text=True,
                       timeout=WAIT_S)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    return p


def readings_in(out):
    """(seq, sensor, value text) of each 'reading ...' line the appliance printed."""
    return re.findall(r"^reading (\d+) (\S+) (\S+) -> job", out, re.M)


# A: five simulated readings, each a signed webhook whose body is the reading.
p = run("a.db", "--simulate", "5", "--seed", "7")
check(p.returncode == 0, "simulated run exits 0")
sent = readings_in(p.stdout)
check(len(sent) == 5, "5 readings enqueued")
# The sink reports a request before answering it; its line may still be on the way.
wait_for(lambda: len(deliveries()) >= 5, "5 deliveries")
got = deliveries()
check(len(got) == 5, "5 webhooks delivered")
check(all(r["sig_ok"] is True for r in got), "every webhook's signature verifies")
bodies = {}
for r in got:
    b = json.loads(r["body"])
    bodies[b["seq"]] = b
    check(r["headers"].get("webhook-id") == "%s@%d" % (b["sensor"], b["ts"]),
          "webhook-id is the reading's key (%s)" % r["headers"].get("webhook-id"))
for seq, sensor, value in sent:
    b = bodies.get(int(seq))
    check(b is not None and b["type"] == "sensor.reading" and b["sensor"] == sensor and
          abs(b["value"] - float(value)) < 1e-9, "reading %s delivered as sent" % seq)

sched = subprocess.run([WFCTL, "--db", os.path.join(tmp, "a.db"), "--json", "schedules", "show",
                        "heartbeat"], capture_output=True, text=True)
check(sched.returncode == 0, "wfctl schedules show heartbeat")
if sched.returncode == 0:
    s = json.loads(sched.stdout)
    check(s["cron"] == "* * * * *" and s["status"] == "active" and s["next_due"] is not None
          and s["job"]["effect"] == "heartbeat", "the heartbeat cron schedule is registered")

# B: the same readings again: same keys, nothing sent twice.
p = run("a.db", "--simulate", "5", "--seed", "7")
check(p.returncode == 0, "second run exits 0")
check(p.stdout.count("(already queued or delivered)") == 5, "the 5 readings are duplicates")
check(len(deliveries()) == 5, "no webhook sent twice")

# C: a bad line is rejected (exit 2), the good one still goes out.
bad = os.path.join(tmp, "bad.txt")
with open(bad, "w") as f:
    f.write("# sensor value ts\nhum-1 40.5 1767225700000\nhum-1 not-a-number\n")
p = run("c.db", "--readings", bad)
check(p.returncode == 2, "a rejected line makes exit status 2")
check("bad.txt:3: not a reading" in p.stderr, "the rejected line is named")
wait_for(lambda: any(r["headers"].get("webhook-id") == "hum-1@1767225700000"
                     for r in deliveries()), "the good line")
check(any(r["headers"].get("webhook-id") == "hum-1@1767225700000" for r in deliveries()),
      "the good line was delivered")

# D: the sink fails (503): exit 3 at the deadline, readings kept; the next run delivers.
outage = os.path.join(tmp, "outage.txt")
with open(outage, "w") as f:
    f.write("door-1 1 1767225800000\ndoor-1 0 1767225801000\n")
p = run("d.db", "--readings", outage, "--deliver-timeout-ms", "300", url=base + "/status/503")
check(p.returncode == 3, "readings not delivered by the deadline: exit 3")
wait_for(lambda: len(deliveries("/status/503")) >= 1, "a failing attempt")
check(len(deliveries("/status/503")) >= 1, "the sink saw the failing attempts")
p = run("d.db", "--readings", "/dev/null")
check(p.returncode == 0, "the next run delivers the kept readings")
kept = {"door-1@1767225800000", "door-1@1767225801000"}
wait_for(lambda: kept <= {r["headers"].get("webhook-id") for r in deliveries()},
         "the kept readings")
ids = {r["headers"].get("webhook-id") for r in deliveries() if r["sig_ok"]}
check(kept <= ids,
      "both kept readings delivered signed")

# E: standard input, a per-second heartbeat that fires, SIGTERM drains and closes.
proc = subprocess.Popen([APPLIANCE, "--db", os.path.join(tmp, "e.db"), "--url", base + "/verify",
                         "--allow-private", "--readings", "-", "--cron", "* * * * * *"],
                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
out_lines = []


def read_app():
    for line in proc.stdout:
        with cond:
            out_lines.append(line)
            cond.notify_all()


reader = threading.Thread(target=read_app, daemon=True)
reader.start()
proc.stdin.write("fan-1 1200 1767225900000\nfan-2 900\n")
proc.stdin.flush()
wait_for(lambda: sum(1 for r in reqs if r.get("ev") == "req" and
                     json.loads(r["body"] or "{}").get("sensor", "").startswith("fan-")) >= 2,
         "two readings from standard input")
wait_for(lambda: any(ln.startswith("heartbeat fired ") for ln in out_lines), "a heartbeat")
proc.send_signal(signal.SIGTERM)  # stdin stays open: the appliance is waiting for input
try:
    rc = proc.wait(timeout=WAIT_S)
except subprocess.TimeoutExpired:
    proc.kill()
    rc = None
reader.join(WAIT_S)
sys.stdout.write("".join(out_lines))
check(rc == 0, "SIGTERM: drained, closed, exit 0")
check(any(ln.startswith("signal %d: draining" % signal.SIGTERM) for ln in out_lines) and
      any(ln.startswith("closed: 2 readings accepted") for ln in out_lines),
      "SIGTERM: the appliance said it drained and closed")
fan = [r for r in deliveries() if json.loads(r["body"]).get("sensor", "").startswith("fan-")]
check(len(fan) == 2 and all(r["sig_ok"] for r in fan), "stdin readings delivered signed")

sink.stdin.write("quit\n")
sink.stdin.flush()
sink.wait(timeout=WAIT_S)
subprocess.run(["rm", "-rf", tmp])
if failures:
    print("%d check(s) failed: %s" % (len(failures), "; ".join(failures)))
sys.exit(1 if failures else 0)
