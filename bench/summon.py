#!/usr/bin/env python3
"""bench/summon: from a client's DNS lookup to its HTTP 200, for services `fata summon` starts.

In one run, `fata summon` serves a zone of three apps/www services in a network namespace:
  - "snap": restored from a snapshot when looked up (goal: median <= 10 ms);
  - "cold": its image booted when looked up (goal: median <= 20 ms);
  - "warm": the same image, summoned once and kept running: the peer, the same client path
    (lookup, connect, GET) with nothing to start.
Each round looks each service up and fetches its page (`Connection: close`), timing the whole,
after the idle timeout (0.3 s) has stopped "snap" and "cold" again; rounds interleave.

Usage: python3 bench/summon.py [--rounds N]   (as root; builds what it needs first)
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, describe_host, ensure_commands, run
from snapshot import enter, first_a, query, spawn, stop, summary

NS = "fata-summonbench"
HOST = "10.94.0.1"
ADDRESS = {"snap": "10.94.1.2", "cold": "10.94.1.3", "warm": "10.94.1.4"}
IDLE = 0.3
DNS = ("127.0.0.1", 53)


def build():
    run("cargo", "build", "--release", "-q", "-p", "fata-cli", cwd=ROOT)
    fata = os.path.join(ROOT, "target/release/fata")
    www = run(fata, "build", "--release", "--target", "hvt", "apps/www", cwd=ROOT).splitlines()[-1]
    return fata, www


def wait_for(log, text, within=60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if text in open(log).read():
            return
        time.sleep(0.01)
    sys.exit(f"bench/summon: {text!r} did not appear in {log}:\n{open(log).read()}")


def snapshot_www(fata, www, work):
    """Boots apps/www at the "snap" address on a tap of its own and snapshots it (--stop)."""
    log = os.path.join(work, "boot.log")
    pid = spawn([fata, "run", www, "--name", "www-bench", "--net", "wbench", "--",
                 "--ipv4", f"{ADDRESS['snap']}/16"], log)
    wait_for(log, "www: serving")
    snap = os.path.join(work, "snap")
    run(fata, "snapshot", "www-bench", "-o", snap, "--stop")
    os.waitpid(pid, 0)
    return snap


def fetch(name):
    """Looks NAME up at the daemon, then GETs / from the address: milliseconds for it all."""
    began = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dns:
        dns.settimeout(10)
        dns.sendto(query(7, f"{name}.bench.test"), DNS)
        address = first_a(dns.recv(512))
    if address != ADDRESS[name]:
        sys.exit(f"bench/summon: {name} resolved to {address}, not {ADDRESS[name]}")
    with socket.create_connection((address, 80), timeout=10) as http:
        http.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := http.recv(65536):
            response += chunk
    if not response.startswith(b"HTTP/1.1 200"):
        sys.exit(f"bench/summon: GET / from {name}: {response[:80]!r}")
    return (time.perf_counter() - began) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/summon needs root (network namespaces and taps): run it with sudo")
    print(describe_host(), flush=True)
    ensure_commands("bench/summon", {"ip": "iproute2"})
    fata, www = build()
    work = tempfile.mkdtemp(prefix="fata-summonbench-")
    os.environ["FATA_RUN_DIR"] = os.path.join(work, "run")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    run("ip", "netns", "add", NS)
    run("ip", "-n", NS, "link", "set", "lo", "up")
    daemon = None
    try:
        enter(NS)
        snap = snapshot_www(fata, www, work)
        config = os.path.join(work, "summon.toml")
        with open(config, "w") as f:
            f.write(f'zone = "bench.test"\nlisten = "{DNS[0]}:{DNS[1]}"\nhost = "{HOST}"\n')
            for name, source, idle in [("snap", f'snapshot = "{snap}"', IDLE),
                                       ("cold", f'image = "{www}"', IDLE),
                                       ("warm", f'image = "{www}"', 3600)]:
                f.write(f'\n[[service]]\nname = "{name}"\n{source}\n'
                        f'address = "{ADDRESS[name]}/16"\nport = 80\nidle-timeout = {idle}\n')
        log = os.path.join(work, "summon.log")
        daemon = spawn([fata, "summon", config], log)
        wait_for(log, "summon: answering")
        fetch("warm")
        times = {name: [] for name in ADDRESS}
        for _ in range(args.rounds):
            for name in ["snap", "cold"]:
                before = open(log).read().count(f"summon: {name} idle")
                times[name].append(fetch(name))
                times["warm"].append(fetch("warm"))
                deadline = time.monotonic() + 10
                while open(log).read().count(f"summon: {name} idle") == before:
                    if time.monotonic() > deadline:
                        sys.exit(f"bench/summon: {name} was not stopped when idle")
                    time.sleep(0.02)
        said = [line for line in open(log) if "ready in" in line][-1].strip()
    finally:
        if daemon:
            stop(daemon)
        enter(None)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    print(describe_host())
    print(f"lookup, connect and GET / (apps/www, --mem 32M), {args.rounds} rounds, interleaved:")
    print(summary("snapshot restored on lookup (snap)", times["snap"]))
    print(summary("image booted on lookup (cold)", times["cold"]))
    print(summary("always running (warm)", times["warm"]))
    warm = statistics.median(times["warm"])
    snap_ms, cold_ms = statistics.median(times["snap"]), statistics.median(times["cold"])
    print(f"ratio against always running: snapshot {snap_ms / warm:.1f}x, cold {cold_ms / warm:.1f}x")
    print(f"the daemon's last start: {said}")
    print(f"goals: snapshot median <= 10 ms: {'met' if snap_ms <= 10 else 'NOT met'}; "
          f"cold median <= 20 ms: {'met' if cold_ms <= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
