#!/usr/bin/env python3
"""bench/http: Fata's HTTP server (apps/www) against nginx, with wrk.

The same two files are served by every server: /bench/2k.html (a 2 KB page) and /bench/200k.bin
(a 200 KB file), which apps/www carries in its image; nginx serves copies fetched from Fata, so
the bytes are identical. wrk (-t1 -c32) runs on CPU 1, each server on CPU 0 with one worker:
  - nginx and Fata unix (host sockets) on loopback, as DESIGN.md measured nginx,
  - the same two in a network namespace reached over a veth pair,
  - Fata hvt (the unikernel) on a tap device in the load generator's namespace.
Prints requests/s, the ratio to nginx, and requests per server CPU-second.

Usage: python3 bench/http.py [--seconds S] [--no-hvt]
"""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

from benchlib import (ROOT, Server, describe_host, ensure_commands, setup_netns, teardown_netns,
                      tree_cpu_seconds)

NS, PEER = "fata-httpbench", "fata-httpbench-peer"
TAP_HOST, TAP_GUEST = "10.95.0.1", "10.95.0.2"
VETH_HOST, VETH_PEER = "10.95.1.1", "10.95.1.2"
FILES = ["/bench/2k.html", "/bench/200k.bin"]


def fetch(netns, url):
    prefix = ["ip", "netns", "exec", netns] if netns else []
    out = subprocess.run(prefix + ["curl", "-s", "-f", "-o", "-", url], capture_output=True)
    return out.stdout if out.returncode == 0 else None


def wrk(netns, url, seconds):
    prefix = ["ip", "netns", "exec", netns] if netns else []
    out = subprocess.run(prefix + ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", url],
                         capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"    wrk reported: {errors.group(0)}", flush=True)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-hvt", action="store_true")
    args = ap.parse_args()
    print(describe_host(), flush=True)
    ensure_commands("bench/http", {"nginx": "nginx-light", "wrk": "wrk", "curl": "curl",
                                   "ip": "iproute2", "taskset": "util-linux"})
    fata = os.path.join(ROOT, "target/release/fata")
    if not os.environ.get("FATA_BENCH_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "fata-cli"], cwd=ROOT, check=True)
    unix = subprocess.run([fata, "build", "--release", "--target", "unix", "apps/www"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    hvt = not args.no_hvt and os.access("/dev/kvm", os.W_OK)
    if hvt:
        image = subprocess.run([fata, "build", "--release", "--target", "hvt", "apps/www"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    work = tempfile.mkdtemp(prefix="fata-httpbench-")
    setup_netns(NS, PEER, TAP_HOST, VETH_HOST, VETH_PEER)
    results = {}
    try:
        ready = lambda address, ns=NS: lambda: fetch(ns, f"http://{address}/bench/2k.html") is not None
        servers = [("Fata unix (veth netns)", [unix, "--port", "80", "--bind", VETH_PEER], VETH_PEER, PEER)]
        # nginx serves what Fata serves, byte for byte.
        first = Server(servers[0][0], servers[0][1], ready(VETH_PEER), PEER)
        os.makedirs(os.path.join(work, "root/bench"))
        for path in FILES:
            with open(os.path.join(work, "root") + path, "wb") as f:
                f.write(fetch(NS, f"http://{VETH_PEER}{path}"))
        first.stop()
        def nginx_conf(listen):
            conf = os.path.join(work, f"nginx-{listen}.conf")
            with open(conf, "w") as f:
                f.write(f"""user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ text/html html; application/octet-stream bin; }}
    client_body_temp_path {work}/tmp;
    server {{ listen {listen}; root {work}/root; }}
}}
""")
            return conf

        servers.insert(0, ("nginx (veth netns)", ["nginx", "-c", nginx_conf(f"{VETH_PEER}:80")], VETH_PEER, PEER))
        servers.insert(0, ("nginx (loopback)", ["nginx", "-c", nginx_conf("127.0.0.1:8080")], "127.0.0.1:8080", None))
        servers.insert(1, ("Fata unix (loopback)", [unix, "--port", "8081", "--bind", "127.0.0.1"],
                           "127.0.0.1:8081", None))
        if hvt:
            servers.append(("Fata hvt (tap netns)", [fata, "run", image, "--net", "tap0", "--mem", "128M",
                                                     "--", "--ipv4", f"{TAP_GUEST}/24"], TAP_GUEST, NS))
        for name, argv, address, netns in servers:
            client = NS if netns else None
            server = Server(name, argv, ready(address, client), netns)
            for path in FILES:
                before, started = tree_cpu_seconds(server.proc.pid), time.time()
                rate = wrk(client, f"http://{address}{path}", args.seconds)
                cpu = tree_cpu_seconds(server.proc.pid) - before
                wall = time.time() - started
                results[(path, name)] = (rate, rate * wall / cpu if cpu > 0 else float("inf"))
                print(f"  {path:<16} {name:<24} {rate:>10.0f} req/s  {results[(path, name)][1]:>10.0f} "
                      f"req/CPU-s ({cpu / wall * 100:.0f}% CPU)", flush=True)
            server.stop()
    finally:
        teardown_netns(NS, PEER)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nbench/http: wrk -t1 -c32, {args.seconds}s per run; servers on CPU 0 (one worker), wrk on CPU 1")
    print(f"{'file':<16} {'server':<24} {'req/s':>10} {'vs nginx':>9} {'req/CPU-s':>10} {'vs nginx':>9}")
    for (path, name), (rate, per_cpu) in results.items():
        nginx = results[(path, "nginx (loopback)" if "loopback" in name else "nginx (veth netns)")]
        print(f"{path:<16} {name:<24} {rate:>10.0f} {rate / nginx[0]:>8.2f}x {per_cpu:>10.0f} "
              f"{per_cpu / nginx[1]:>8.2f}x")


if __name__ == "__main__":
    main()
