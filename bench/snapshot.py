#!/usr/bin/env python3
"""bench/snapshot: restoring and moving a running unikernel, against booting it.

Measures, in one run:
  - cold boot vs restore of the DNS unikernel (apps/dns on hvt, a compiled zone in a key-value
    store): whole-process time from posix_spawn of `fata run` or `fata restore` to the first
    correct answer over its tap, RUNS runs each, interleaved (goal: restore median <= 3 ms);
  - the snapshot's size on disk against the guest's memory;
  - RESTORES restores of that snapshot at once, each on a tap of its own in a network namespace
    of its own: all must answer; then, idle, the host memory each costs (Pss, and the pages
    private to it; clean pages of the memory file are shared: goal <= 4 MiB each);
  - live migration of apps/pulse (32 MiB) between two taps on one bridge, back and forth
    MIGRATIONS times, while fata-netload sends DNS queries and curl downloads a large file over
    HTTP: the downtime the client sees (the longest silence between answers; goal <= 10 ms), the
    time the guest stood still at the source and the migration's total time, as the monitor
    reports them.

The host's side of each tap has a static neighbour entry for the guest's MAC, so the time
measured is the unikernel's and not the host's ARP retry timer.

Usage: python3 bench/snapshot.py [--runs N] [--restores N] [--migrations N]   (as root; builds
what it needs first)
"""
import argparse
import ctypes
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, describe_host, ensure_commands, run

CLONE_NEWNET = 0x40000000
MAC = "02:fa:7a:00:00:02"
SUBNET = 96
HOST, GUEST = f"10.{SUBNET}.0.1", f"10.{SUBNET}.0.2"
NS = "fata-snapbench"
MANY_NS = "fata-snapbench-{}"
NS_ANSWER = "192.0.2.53"
LIBC = ctypes.CDLL(None, use_errno=True)
ROOT_NS = os.open("/proc/self/ns/net", os.O_RDONLY)


def enter(ns):
    """Moves this process (and what it starts from now on) into network namespace `ns`
    (None: the one it started in)."""
    fd = ROOT_NS if ns is None else os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"setns({ns}): {os.strerror(ctypes.get_errno())}; run bench/snapshot.py as root")
    if fd != ROOT_NS:
        os.close(fd)


def make_ns(ns, taps=("tap0",), bridge=False):
    """`ns` with `taps`, the host at HOST (on a bridge over the taps if `bridge`), and a static
    neighbour entry for the guest."""
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    steps = [["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "set", "lo", "up"]]
    for tap in taps:
        steps.append(["ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"])
    device = "br0" if bridge else taps[0]
    if bridge:
        steps.append(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        for tap in taps:
            steps.append(["ip", "-n", ns, "link", "set", tap, "mtu", "9000", "master", "br0", "up"])
        steps.append(["ip", "-n", ns, "link", "set", "br0", "mtu", "9000"])
    steps += [["ip", "-n", ns, "addr", "add", f"{HOST}/24", "dev", device],
              ["ip", "-n", ns, "link", "set", device, "up"],
              ["ip", "-n", ns, "neigh", "replace", GUEST, "lladdr", MAC, "dev", device, "nud",
               "permanent"]]
    for step in steps:
        run(*step)


def query(qid, name, qtype=1):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", qtype, 1)


def first_a(response):
    """The address of the first A record of a response, or None."""
    if len(response) < 12 or struct.unpack(">H", response[6:8])[0] == 0:
        return None
    i = 12
    while response[i]:
        i += response[i] + 1
    i += 5
    if response[i] & 0xC0 != 0xC0:
        return None
    rtype, _, _, length = struct.unpack(">HHIH", response[i + 2:i + 12])
    if rtype != 1 or length != 4:
        return None
    return socket.inet_ntoa(response[i + 12:i + 16])


def spawn(argv, log):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, fd, 1),
               (os.POSIX_SPAWN_DUP2, fd, 2)]
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True)
    os.close(fd)
    os.close(null)
    return pid


def wait_answer(pid, log, name="ns1.bench.fata", expected=NS_ANSWER, within=30.0, every=0.0001):
    """Asks GUEST for `name` every `every` seconds until the right answer comes; exits if
    process `pid` ends or `within` seconds pass (and stops it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    message = query(0x5EED, name)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            try:
                sock.sendto(message, (GUEST, 53))
            except OSError:
                pass  # the tap has no carrier until the monitor opens it
            if select.select([sock], [], [], every)[0] and first_a(sock.recv(2048)) == expected:
                return
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                sys.exit(f"a guest ended before it answered:\n{open(log).read()[-2000:]}")
        stop(pid)
        sys.exit(f"a guest did not answer within {within} s:\n{open(log).read()[-2000:]}")
    finally:
        sock.close()


def first_answer(argv, log, name="ns1.bench.fata", expected=NS_ANSWER):
    """Starts `argv` and asks GUEST for `name` every 100 us until the right answer comes; returns
    (pid, milliseconds from the spawn to that answer)."""
    start = time.perf_counter_ns()
    pid = spawn(argv, log)
    wait_answer(pid, log, name, expected, within=10.0)
    return pid, (time.perf_counter_ns() - start) / 1e6


def stop(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    os.waitpid(pid, 0)


def build():
    run("cargo", "build", "--release", "-q", "-p", "fata-cli", "-p", "fata-netload", "-p",
        "fata-zone", cwd=ROOT)
    fata = os.path.join(ROOT, "target/release/fata")
    dns = run(fata, "build", "--release", "--target", "hvt", "apps/dns", cwd=ROOT).splitlines()[-1]
    pulse = run(fata, "build", "--release", "--target", "hvt", "apps/pulse", cwd=ROOT).splitlines()[-1]
    return fata, dns, pulse


def write_zone(work):
    """A zone of 1,000 names compiled by fata-zone into a store directory; returns it."""
    zone = os.path.join(work, "bench.fata.zone")
    lines = ["$ORIGIN bench.fata.", "$TTL 3600",
             "@ IN SOA ns1 hostmaster 2026120201 7200 3600 1209600 300",
             "@ IN NS ns1", f"ns1 IN A {NS_ANSWER}"]
    lines += [f"h{i} IN A 10.0.{i >> 8}.{i & 255}" for i in range(1000)]
    with open(zone, "w") as f:
        f.write("\n".join(lines) + "\n")
    store = os.path.join(work, "zones")
    os.makedirs(store)
    run(os.path.join(ROOT, "target/release/fata-zone"), os.path.join(store, "zone"), zone)
    return store


def summary(name, values, unit="ms"):
    return (f"{name:<44} median {statistics.median(values):8.3f} {unit}   "
            f"min {min(values):8.3f}   max {max(values):8.3f}")


def memory_of(pid):
    """(Rss, Pss, private) of `pid` in KiB, from smaps_rollup."""
    fields = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return (fields["Rss"], fields["Pss"],
            fields["Private_Clean"] + fields["Private_Dirty"])


def boot_and_restore(fata, image, store, work, runs, env_run):
    enter(NS)
    cold_argv = [fata, "run", image, "--name", "dns-cold", "--mem", "32M", "--net", "tap0",
                 "--mac", MAC, "--kv", f"files={store}", "--", "--zone", "zone",
                 "--ipv4", f"{GUEST}/24"]
    # The snapshot: a booted guest that has answered, stopped into a snapshot.
    pid, _ = first_answer(cold_argv[:4] + ["dns-snap"] + cold_argv[5:], os.path.join(work, "snap.log"))
    snap = os.path.join(work, "snap")
    said = run(fata, "snapshot", "dns-snap", "-o", snap, "--stop", env=env_run)
    os.waitpid(pid, 0)
    restore_argv = [fata, "restore", snap, "--name", "dns-restored", "--net", "tap0"]
    cold, restored = [], []
    for _ in range(runs):
        pid, took = first_answer(cold_argv, os.path.join(work, "cold.log"))
        cold.append(took)
        stop(pid)
        pid, took = first_answer(restore_argv, os.path.join(work, "restore.log"))
        restored.append(took)
        stop(pid)
    enter(None)
    return cold, restored, snap, said.strip()


def disk_usage(path):
    return sum(os.stat(os.path.join(path, f)).st_blocks * 512 for f in os.listdir(path))


def many_restores(fata, snap, work, count):
    """`count` restores of `snap` at once, each on the tap of a namespace of its own; returns
    (seconds until all answered, memory per restore once idle)."""
    for i in range(count):
        make_ns(MANY_NS.format(i))
    pids = []
    start = time.monotonic()
    try:
        for i in range(count):
            enter(MANY_NS.format(i))
            pids.append(spawn([fata, "restore", snap, "--name", f"dns-many-{i}", "--net", "tap0"],
                              os.path.join(work, f"many-{i}.log")))
        for i in range(count):
            enter(MANY_NS.format(i))
            wait_answer(pids[i], os.path.join(work, f"many-{i}.log"), every=0.01)
        took = time.monotonic() - start
        enter(None)
        time.sleep(2)
        memory = [memory_of(pid) for pid in pids]
        for i in range(count):
            enter(MANY_NS.format(i))
            wait_answer(pids[i], os.path.join(work, f"many-{i}.log"), every=0.01)
        enter(None)
        return took, memory
    finally:
        enter(None)
        for pid in pids:
            stop(pid)
        for i in range(count):
            subprocess.run(["ip", "netns", "del", MANY_NS.format(i)], capture_output=True)


def migrations(fata, pulse, work, count, env_run):
    """Moves pulse between tap0 and tap1 `count` times under DNS load and a download; returns a
    list of (client's longest gap ms, stood still ms, total ms, answered, sent, download ok)."""
    make_ns(NS, taps=("tap0", "tap1"), bridge=True)
    enter(NS)
    queries = os.path.join(work, "pulse.queries")
    with open(queries, "w") as f:
        f.write("pulse.test A\n")
    pid, _ = first_answer([fata, "run", pulse, "--name", "pulse-0", "--mem", "32M", "--net",
                           "tap0", "--mac", MAC, "--", "--ipv4", f"{GUEST}/24"],
                          os.path.join(work, "pulse-0.log"), name="pulse.test", expected=GUEST)
    results, taps = [], ["tap0", "tap1"]
    try:
        for round_ in range(count):
            tap = taps[(round_ + 1) % 2]
            port = 7500 + round_
            receiver = spawn([fata, "receive", "--listen", f"127.0.0.1:{port}", "--name",
                              f"pulse-{round_ + 1}", "--net", tap],
                             os.path.join(work, f"pulse-{round_ + 1}.log"))
            time.sleep(0.3)
            load = subprocess.Popen(
                ["taskset", "-c", "1", os.path.join(ROOT, "target/release/fata-netload"), "dns",
                 f"{GUEST}:53", "--queries", queries, "--rate", "20000", "--window", "4096",
                 "--sockets", "1", "--seconds", "3"], stdout=subprocess.PIPE, text=True)
            size = 256 << 20
            download = subprocess.Popen(
                ["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{size_download}",
                 "--limit-rate", "100M", f"http://{GUEST}/bytes/{size}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)
            moved = run(fata, "migrate", f"pulse-{round_}", "--to", f"127.0.0.1:{port}", env=env_run)
            os.waitpid(pid, 0)
            pid = receiver
            out = load.communicate()[0]
            got, err = download.communicate()
            gap = re.search(r"longest gap between answers ([\d.]+) ms", out)
            counts = re.search(r"\((\d+) of (\d+) sent", out)
            still = re.search(r"stopped for ([\d.]+) ms; (\d+) ms in all", moved)
            if not (gap and counts and still):
                sys.exit(f"unexpected output:\n{out}\n{moved}")
            results.append((float(gap.group(1)), float(still.group(1)), float(still.group(2)),
                            int(counts.group(1)), int(counts.group(2)),
                            download.returncode == 0 and got.strip() == str(size), moved.strip()))
    finally:
        stop(pid)
        enter(None)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--restores", type=int, default=100)
    ap.add_argument("--migrations", type=int, default=6)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/snapshot needs root (network namespaces and taps): run it with sudo")
    print(describe_host(), flush=True)
    ensure_commands("bench/snapshot", {"curl": "curl", "ip": "iproute2", "taskset": "util-linux"})
    fata, dns, pulse = build()
    work = tempfile.mkdtemp(prefix="fata-snapbench-")
    env_run = dict(os.environ, FATA_RUN_DIR=os.path.join(work, "run"))
    os.environ["FATA_RUN_DIR"] = env_run["FATA_RUN_DIR"]
    store = write_zone(work)
    make_ns(NS)
    try:
        cold, restored, snap, said = boot_and_restore(fata, dns, store, work, args.runs, env_run)
        took, memory = many_restores(fata, snap, work, args.restores)
        moves = migrations(fata, pulse, work, args.migrations, env_run)
    finally:
        enter(None)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    print(describe_host())
    print(f"DNS unikernel (apps/dns, --mem 32M, a zone of 1,000 names), {args.runs} runs each, interleaved:")
    print(summary("cold boot: fata run -> first answer", cold))
    print(summary("restore: fata restore -> first answer", restored))
    ratio = statistics.median(restored) / statistics.median(cold)
    print(f"ratio restore / cold boot: {ratio:.2f}")
    size = disk_usage(snap)
    print(f"snapshot: {size / 2**20:.2f} MiB on disk for 32 MiB of guest memory "
          f"(ratio {size / (32 << 20):.3f}); {said}")
    rss = [m[0] / 1024 for m in memory]
    pss = [m[1] / 1024 for m in memory]
    private = [m[2] / 1024 for m in memory]
    print(f"{args.restores} restores at once, each on its own tap: all answered within {took:.2f} s")
    print(summary("  each, idle: Rss", rss, "MiB"))
    print(summary("  each, idle: Pss", pss, "MiB"))
    print(summary("  each, idle: private pages", private, "MiB"))
    print(f"live migration of apps/pulse (--mem 32M), {len(moves)} moves between two taps on a "
          "bridge, under 20,000 DNS queries/s and a 256 MiB HTTP download:")
    for m in moves:
        print(f"  client gap {m[0]:6.2f} ms; {m[3]} of {m[4]} answered; download "
              f"{'whole' if m[5] else 'BROKEN'}; monitor: {m[6]}")
    print(summary("downtime the client saw (longest gap)", [m[0] for m in moves]))
    print(summary("guest stopped at the source", [m[1] for m in moves]))
    print(summary("migration, all of it", [m[2] for m in moves]))
    downtime = statistics.median(m[0] for m in moves)
    print(f"ratio client gap / guest stopped: {downtime / statistics.median(m[1] for m in moves):.2f}")
    print(f"goals: restore median <= 3 ms: {'met' if statistics.median(restored) <= 3 else 'NOT met'}; "
          f"idle private memory <= 4 MiB each: {'met' if statistics.median(private) <= 4 else 'NOT met'}; "
          f"downtime <= 10 ms: {'met' if downtime <= 10 else 'NOT met'}; "
          f"downloads whole: {'yes' if all(m[5] for m in moves) else 'NO'}")


if __name__ == "__main__":
    main()
