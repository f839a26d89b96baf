"""``python -m services.launcher``: runs the exporter, the trainer and the gateway as three processes in the
foreground, their logs interleaved and labelled, until Ctrl-C (SIGINT) or SIGTERM stops all three.

If one service exits on its own, the others are stopped too and the launcher exits non-zero, so a broken
start is never half-running.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

SERVICES = ("exporter", "trainer", "gateway")
COLORS = {"exporter": "\033[36m", "trainer": "\033[35m", "gateway": "\033[33m"}
RESET = "\033[0m"
STOP_TIMEOUT = 20.0

_print_lock = threading.Lock()


def _pump(name: str, proc: subprocess.Popen, color: bool) -> None:
    label = f"{COLORS[name]}{name:>8}{RESET}" if color else f"{name:>8}"
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        with _print_lock:
            sys.stdout.write(f"{label} | {line.decode(errors='replace')}")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.launcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    color = sys.stdout.isatty()
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    procs: dict[str, subprocess.Popen] = {}
    stopping = threading.Event()

    def stop(*_args) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    for name in reversed(SERVICES):
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            # Own process group: Ctrl-C reaches the launcher, which stops each service in order.
            start_new_session=True,
        )
        threading.Thread(target=_pump, args=(name, procs[name], color), daemon=True).start()

    failed = None
    while not stopping.is_set():
        for name, p in procs.items():
            if p.poll() is not None:
                failed = f"{name} exited with code {p.returncode}"
                stopping.set()
                break
        time.sleep(0.2)

    if failed:
        print(f"launcher | {failed}; stopping the others", flush=True)
    else:
        print("launcher | stopping", flush=True)
    # The gateway first (no new requests), then the trainer (checkpoints its jobs), then the exporter.
    for name in reversed(SERVICES):
        p = procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"launcher | {name} did not stop in {STOP_TIMEOUT:.0f}s; killing it", flush=True)
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        print(f"launcher | {name} stopped ({p.returncode})", flush=True)
    time.sleep(0.1)
    print("launcher | all stopped: " + ", ".join(f"{n}={procs[n].returncode}" for n in SERVICES), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
