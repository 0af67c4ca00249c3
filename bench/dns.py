#!/usr/bin/env python3
"""bench/dns: Fata's authoritative DNS server against NSD, Knot and BIND9.

For zones of 100, 1,000 and 10,000 names and a query mix with about 10% NXDOMAIN, it measures
  - maximum queries per second, with dnsperf and with fata-netload (a faster generator: dnsperf
    saturates its own core near 165k qps here), and
  - queries per server CPU-second, and the answers' latency, at a fixed offered rate every server
    holds (the server's whole process tree is counted: NSD's workers, the whole monitor process for
    hvt).
Servers run on CPU 0 and the load generator on CPU 1; servers run one after another, in the same
order for every zone. Peers listen on 127.0.0.1. For a like-for-like path with the unikernel
(reached over a tap device), NSD and Fata unix also run in a network namespace reached over a
veth pair, and Fata hvt on a tap device in the same namespace.

Usage: python3 bench/dns.py [--seconds S] [--rate QPS] [--sizes 100,1000,10000] [--no-hvt]
                            [--rates 5000,20000,40000,100000]   (the latency table's rates)
                            [--only NAME,NAME]   (servers whose name contains one of the words)
                            [--fata-args "--coalesce-us 0"]   (extra `fata run` options)
Prints a table with each ratio to NSD, then each server's latency against the offered rate.
"""
import argparse
from benchlib import (ROOT, Server, describe_host, ensure_commands, setup_netns,
                      teardown_netns, tree_cpu_seconds)
import os
import random
import re
import shutil
import subprocess
import tempfile
import time

NS, PEER = "fata-dnsbench", "fata-dnsbench-peer"
TAP_HOST, TAP_GUEST = "10.97.0.1", "10.97.0.2"
VETH_HOST, VETH_PEER = "10.97.1.1", "10.97.1.2"
PORT = 5353


def write_zone(path, size, seed=1):
    rnd = random.Random(seed)
    lines = ["$ORIGIN bench.fata.", "$TTL 3600",
             "@ IN SOA ns1 hostmaster 2026112401 7200 3600 1209600 300",
             "@ IN NS ns1", "@ IN NS ns2", "ns1 IN A 192.0.2.53", "ns2 IN A 192.0.2.54",
             "@ IN MX 10 mail", "mail IN A 192.0.2.25", "@ IN A 192.0.2.1"]
    for i in range(size):
        lines.append(f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        if i % 4 == 0:
            lines.append(f"h{i} IN AAAA 2001:db8::{i:x}")
        if i % 10 == 0:
            lines.append(f"h{i} IN MX 10 mail")
        if i % 25 == 0:
            lines.append(f"w{i} IN CNAME h{rnd.randrange(size)}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_queries(path, size, count=50000, seed=2):
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        if rnd.random() < 0.10:
            out.append(f"nx{rnd.randrange(10 ** 7)}.bench.fata A")
        else:
            i = rnd.randrange(size)
            out.append(f"h{i}.bench.fata {rnd.choice(['A', 'A', 'A', 'AAAA', 'MX'])}")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def answers(netns, address):
    cmd = (["ip", "netns", "exec", netns] if netns else []) + [
        "dig", "+short", "+time=1", "+tries=1", "-p", str(PORT), f"@{address}", "ns1.bench.fata", "A"]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() == "192.0.2.53"


def load(netns, tool, address, queries, seconds, rate=0):
    prefix = ["ip", "netns", "exec", netns] if netns else []
    if tool == "dnsperf":
        argv = ["dnsperf", "-s", address, "-p", str(PORT), "-d", queries, "-l", str(seconds),
                "-c", "16", "-T", "1", "-q", "500"]
        if rate:
            argv += ["-Q", str(rate)]
        out = subprocess.run(prefix + ["taskset", "-c", "1"] + argv, capture_output=True, text=True).stdout
        m = re.search(r"Queries per second:\s+([\d.]+)", out)
        return float(m.group(1)) if m else 0.0
    argv = [os.path.join(ROOT, "target/release/fata-netload"), "dns", f"{address}:{PORT}",
            "--queries", queries, "--seconds", str(seconds), "--rate", str(rate)]
    out = subprocess.run(prefix + ["taskset", "-c", "1"] + argv, capture_output=True, text=True).stdout
    m = re.search(r"([\d.]+) queries/s", out)
    latency = re.search(r"latency mean (\d+) us, p99 (\d+) us", out)
    return (float(m.group(1)) if m else 0.0,
            (int(latency.group(1)), int(latency.group(2))) if latency else (0, 0))


def configs(work, zone):
    nsd = os.path.join(work, "nsd.conf")
    with open(nsd, "w") as f:
        f.write(f"""server:
  ip-address: 0.0.0.0@{PORT}
  server-count: 1
  username: ""
  zonesdir: "{work}"
  pidfile: "{work}/nsd.pid"
  database: ""
  zonelistfile: "{work}/zone.list"
  xfrdfile: "{work}/xfrd.state"
  logfile: "{work}/nsd.log"
  hide-version: yes
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: bench.fata
  zonefile: {zone}
""")
    knot = os.path.join(work, "knot.conf")
    with open(knot, "w") as f:
        f.write(f"""server:
    listen: 127.0.0.1@{PORT}
    rundir: {work}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: {work}/knotdb
log:
  - target: stderr
    any: error
zone:
  - domain: bench.fata
    file: {zone}
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
""")
    named = os.path.join(work, "named.conf")
    with open(named, "w") as f:
        f.write(f"""options {{
    directory "{work}";
    listen-on port {PORT} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    pid-file none;
    dnssec-validation no;
    minimal-responses no;
}};
zone "bench.fata" {{ type primary; file "{zone}"; }};
""")
    return nsd, knot, named


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=40000)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--no-hvt", action="store_true")
    ap.add_argument("--only", default="", help="run only servers whose name contains one of these")
    ap.add_argument("--fata-args", default="", help="extra `fata run` options, e.g. --coalesce-us 0")
    ap.add_argument("--rates", default="5000,20000,40000,100000",
                    help="offered rates of the latency table (empty: no table)")
    args = ap.parse_args()
    print(describe_host(), flush=True)
    ensure_commands("bench/dns", {"nsd": "nsd", "knotd": "knot", "named": "bind9",
                                  "dnsperf": "dnsperf", "dig": "dnsutils", "ip": "iproute2",
                                  "taskset": "util-linux"})
    if not os.environ.get("FATA_BENCH_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "fata-cli", "-p", "fata-netload"],
                       cwd=ROOT, check=True)
    fata = os.path.join(ROOT, "target/release/fata")
    hvt = not args.no_hvt and os.access("/dev/kvm", os.W_OK)
    work = tempfile.mkdtemp(prefix="fata-dnsbench-")
    setup_netns(NS, PEER, TAP_HOST, VETH_HOST, VETH_PEER)
    results = {}
    rates = [int(r) for r in args.rates.split(",") if r]
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            zone = os.path.join(work, f"bench{size}.zone")
            queries = os.path.join(work, f"bench{size}.queries")
            write_zone(zone, size)
            write_queries(queries, size)
            nsd, knot, named = configs(work, zone)
            os.makedirs(os.path.join(work, "knotdb"), exist_ok=True)
            fata_args = args.fata_args.split()
            dns = lambda *extra: [fata, "run", "--release", "--target", "unix", *fata_args, "apps/dns", "--",
                                  "--zone", zone, "--port", str(PORT), *extra]
            servers = [
                ("NSD", ["nsd", "-d", "-c", nsd], "127.0.0.1", None),
                ("Knot", ["knotd", "-c", knot], "127.0.0.1", None),
                ("BIND9", ["named", "-g", "-n", "1", "-c", named], "127.0.0.1", None),
                ("Fata unix", dns(), "127.0.0.1", None),
                ("Fata unix, no memo", dns("--no-memo"), "127.0.0.1", None),
                ("NSD (veth netns)", ["nsd", "-d", "-c", nsd], VETH_PEER, PEER),
                ("Fata unix (veth netns)", dns("--bind", VETH_PEER), VETH_PEER, PEER),
            ]
            # Fata's own stack on a tap device, as a process: the unikernel's path without the VM.
            servers.append(("Fata unix direct (tap netns)",
                            [fata, "run", "--release", "--target", "unix", *fata_args, "apps/dns",
                             "--net", "tap0", "--", "--zone", zone, "--port", str(PORT),
                             "--ipv4", f"{TAP_GUEST}/24"], TAP_GUEST, NS))
            if hvt:
                hvt_cmd = [fata, "run", "--release", "--target", "hvt", *fata_args, "apps/dns", "--net", "tap0",
                           "--", "--zone", zone, "--port", str(PORT), "--ipv4", f"{TAP_GUEST}/24"]
                servers.append(("Fata hvt (tap netns)", hvt_cmd, TAP_GUEST, NS))
                servers.append(("Fata hvt, no memo", hvt_cmd + ["--no-memo"], TAP_GUEST, NS))
            wanted = [w for w in args.only.split(",") if w]
            servers = [s for s in servers if not wanted or any(w in s[0] for w in wanted)]
            for name, argv, address, netns in servers:
                server = Server(name, argv, lambda: answers(netns, address), netns)
                client_ns = NS if netns else None
                row = {}
                row["dnsperf"] = load(client_ns, "dnsperf", address, queries, args.seconds)
                row["netload"], row["max_latency"] = load(client_ns, "netload", address, queries,
                                                          args.seconds)
                before = tree_cpu_seconds(server.proc.pid)
                started = time.time()
                answered, row["latency"] = load(client_ns, "netload", address, queries,
                                                args.seconds, args.rate)
                cpu = tree_cpu_seconds(server.proc.pid) - before
                wall = time.time() - started
                row["fixed"] = answered
                row["per_cpu"] = answered * wall / cpu if cpu > 0 else float("inf")
                row["cpu_share"] = cpu / wall
                row["by_rate"] = {rate: load(client_ns, "netload", address, queries,
                                             max(2, args.seconds // 2), rate) for rate in rates}
                server.stop()
                results[(size, name)] = row
                print(f"  {size:>6} names  {name:<24} dnsperf {row['dnsperf']:>9.0f}  "
                      f"fata-netload {row['netload']:>9.0f}  at {args.rate}/s: "
                      f"{row['per_cpu']:>9.0f} q/CPU-s ({row['cpu_share'] * 100:.0f}% CPU, "
                      f"latency mean {row['latency'][0]} us, p99 {row['latency'][1]} us)", flush=True)
    finally:
        teardown_netns(NS, PEER)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nbench/dns: {args.seconds}s per run; servers on CPU 0, load on CPU 1; "
          f"fixed offered rate {args.rate} q/s")
    print(f"{'zone':>6} {'server':<24} {'max q/s':>10} {'(dnsperf)':>10} {'vs NSD':>7} "
          f"{'q/CPU-s':>10} {'vs NSD':>7} {'latency':>8} {'p99':>6}")
    for (size, name), row in results.items():
        namespaced = "netns" in name or "hvt" in name
        nsd = results.get((size, "NSD (veth netns)" if namespaced else "NSD"), row)
        best, nsd_best = max(row["netload"], row["dnsperf"]), max(nsd["netload"], nsd["dnsperf"])
        print(f"{size:>6} {name:<24} {best:>10.0f} {row['dnsperf']:>10.0f} {best / nsd_best:>6.2f}x "
              f"{row['per_cpu']:>10.0f} {row['per_cpu'] / nsd['per_cpu']:>6.2f}x "
              f"{row['latency'][0]:>5} us {row['latency'][1]:>3} us")
    if rates:
        print(f"\nlatency against offered rate (fata-netload, mean / p99 in us, answered q/s), "
              f"{max(2, args.seconds // 2)}s each; max: as fast as answers come")
        print(f"{'zone':>6} {'server':<30}" + "".join(f"{r:>22}" for r in rates) + f"{'max':>24}")
        for (size, name), row in results.items():
            cells = [f"{lat[0]} / {lat[1]} ({answered:.0f})" for answered, lat in
                     (row["by_rate"][rate] for rate in rates)]
            cells.append(f"{row['max_latency'][0]} / {row['max_latency'][1]} ({row['netload']:.0f})")
            print(f"{size:>6} {name:<30}" + "".join(f"{c:>22}" for c in cells[:-1]) + f"{cells[-1]:>24}")


if __name__ == "__main__":
    main()
