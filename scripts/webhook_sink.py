#!/usr/bin/env python3
"""A small HTTP/1.1 keep-alive webhook sink on 127.0.0.1 for tests, the demo and
the benchmark. It verifies Standard Webhooks signatures on its own (Python's
hmac, not the engine's code) and reports every request as one JSON line on
stdout.

  webhook_sink.py [--secret whsec_...|env:NAME]... [--tls CERT KEY] [--port N] [--quiet]

Prints {"ev":"ready","port":N} first. Commands on stdin, one per line:
  release   answer every request held on /hold (and later ones at once)
  quit      exit
Routes (any method):
  /ok              200, JSON body, X-Request-Id header
  /flaky?ra=V      first request per webhook-id: 503 with Retry-After V; then 200
  /status/N        status N
  /redirect        302 to /ok
  /hang            never answers
  /hold            answers 200 once "release" was read
  /verify          200 when the signature verifies, else 401
Each request line: {"ev":"req","method","path","headers":{lower-case},
"body","sig_ok"} (sig_ok: null without --secret). --quiet reports only
{"ev":"held","n":N} lines (every 100 held requests, and at N=1) .
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys

args = None
keys = []
released = None
held = 0
flaky_seen = set()


def verify(headers, body):
    if not keys:
        return None
    wid = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not (wid and ts and sigs):
        return False
    msg = wid.encode() + b"." + ts.encode() + b"." + body
    for k in keys:
        want = base64.b64encode(hmac.new(k, msg, hashlib.sha256).digest()).decode()
        for s in sigs.split(" "):
            ver, _, val = s.partition(",")
            if ver == "v1" and hmac.compare_digest(val, want):
                return True
    return False


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def response(status, body=b"", extra=()):
    reason = {200: "OK", 302: "Found", 401: "Unauthorized", 503: "Service Unavailable"}.get(
        status, "Status")
    head = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    for k, v in extra:
        head += "%s: %s\r\n" % (k, v)
    return head.encode() + b"\r\n" + body


async def handle(reader, writer):
    global held
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
            path, _, query = target.partition("?")
            sig_ok = verify(headers, body)
            if not args.quiet:
                emit({"ev": "req", "method": method, "path": path, "headers": headers,
                      "body": body.decode("utf-8", "replace"), "sig_ok": sig_ok})
            ok_body = json.dumps({"ok": True, "sig_ok": sig_ok}).encode()
            json_ct = ("Content-Type", "application/json")
            if path == "/ok":
                out = response(200, ok_body, [json_ct, ("X-Request-Id", "r-1")])
            elif path == "/flaky":
                wid = headers.get("webhook-id", "")
                if wid in flaky_seen:
                    out = response(200, ok_body, [json_ct])
                else:
                    flaky_seen.add(wid)
                    ra = query[3:] if query.startswith("ra=") else "120"
                    out = response(503, b"busy", [("Retry-After", ra)])
            elif path.startswith("/status/"):
                out = response(int(path[8:]), b"status body")
            elif path == "/redirect":
                out = response(302, b"", [("Location", "/ok")])
            elif path == "/hang":
                await asyncio.Event().wait()
                return
            elif path == "/hold":
                held += 1
                if args.quiet and (held == 1 or held % 100 == 0):
                    emit({"ev": "held", "n": held})
                await released.wait()
                out = response(200, ok_body, [json_ct])
            elif path == "/verify":
                out = response(200 if sig_ok else 401, ok_body, [json_ct])
            else:
                out = response(404, b"no such route")
            writer.write(out)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def commands():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.strip()
        if cmd == "release":
            released.set()
            emit({"ev": "released"})
        elif cmd == "quit" or not line:
            return


async def main():
    global args, released
    p = argparse.ArgumentParser()
    p.add_argument("--secret", action="append", default=[])
    p.add_argument("--tls", nargs=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    for s in args.secret:
        if s.startswith("env:"):
            s = os.environ[s[4:]]
        keys.append(base64.b64decode(s[6:] if s.startswith("whsec_") else s))
    released = asyncio.Event()
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=ctx, backlog=4096)
    emit({"ev": "ready", "port": server.sockets[0].getsockname()[1]})
    async with server:
        await commands()
    sys.stdout.flush()
    os._exit(0)  # no teardown of the connections still open


if __name__ == "__main__":
    asyncio.run(main())
