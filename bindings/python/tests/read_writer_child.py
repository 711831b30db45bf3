"""Child process of test_read.py: runs a writing engine on a file while the parent reads
it through an engine opened {"read_only": True}. Commands on stdin, one per line:
`enqueue N` enqueues N jobs of effect "w" (answers "ok"); `quit` closes the engine."""

from __future__ import annotations

import sys

import wfengine


def main() -> None:
    db = sys.argv[1]
    with wfengine.Engine(db) as engine:
        engine.register_effect("idle", lambda job: {})  # listed by engines_list; "w" is not served
        engine.start()
        engine.sync()  # the registration is in the file
        print("ready", flush=True)
        n = 0
        for line in sys.stdin:
            cmd = line.split()
            if cmd and cmd[0] == "enqueue":
                for _ in range(int(cmd[1])):
                    engine.enqueue({"effect": "w", "key": f"w{n}", "payload": {"n": n}})
                    n += 1
                print("ok", flush=True)
            elif cmd and cmd[0] == "quit":
                break
    print("closed", flush=True)


if __name__ == "__main__":
    main()
