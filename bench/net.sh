#!/usr/bin/env bash
# bench/net: TCP throughput each way (stock iperf3 client: upload, and download with -R) and UDP
# request-response rate (fata-netload)
# against Fata on hvt, unix-direct (smoltcp on a tap) and unix-socket (host sockets), and against
# the host kernel itself, all inside network namespaces this script creates and removes.
#
#   ns fata-bench       tap0 10.98.0.1/24   <- Fata hvt / unix-direct at 10.98.0.2
#                       pk1  10.98.2.1/24   -- veth -- pk0 <- Fata hvt on AF_PACKET rings at 10.98.2.2
#                       vb0  10.98.1.1/24   -- veth -- vb1 10.98.1.2 in ns fata-bench-peer
#   ns fata-bench-peer  vb1  10.98.1.2/24   <- iperf3 -s (host kernel), Fata unix-socket
#
# Servers run on CPU 0, load generators on CPU 1. Usage: bash bench/net.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
python3 bench/benchlib.py
ensure_commands iperf3:iperf3 ip:iproute2 taskset:util-linux

secs=${1:-5}
ns=fata-bench
peer=fata-bench-peer
cargo build --release -q -p fata-cli -p fata-netload
fata=$PWD/target/release/fata
load=$PWD/target/release/fata-netload
iperf_unix=$($fata build --release --target unix apps/iperf 2>/dev/null | tail -1)
echo_unix=$($fata build --release --target unix apps/echo 2>/dev/null | tail -1)
hvt=0
if [ "${FATA_BENCH_HVT:-1}" = 1 ] && have_kvm "bench/net hvt rows"; then
  iperf_hvt=$($fata build --release --target hvt apps/iperf 2>/dev/null | tail -1)
  echo_hvt=$($fata build --release --target hvt apps/echo 2>/dev/null | tail -1)
  hvt=1
fi

cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  ip netns del $ns 2>/dev/null || true
  ip netns del $peer 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add $ns
ip netns add $peer
ip -n $ns link set lo up
ip -n $peer link set lo up
ip -n $ns tuntap add dev tap0 mode tap
ip -n $ns addr add 10.98.0.1/24 dev tap0
ip -n $ns link set tap0 up
ip -n $ns link add vb0 type veth peer name vb1 netns $peer
ip -n $ns addr add 10.98.1.1/24 dev vb0
ip -n $peer addr add 10.98.1.2/24 dev vb1
ip -n $ns link set vb0 up
ip -n $peer link set vb1 up
ip -n $ns link add pk1 type veth peer name pk0
ip -n $ns addr add 10.98.2.1/24 dev pk1
ip -n $ns link set pk1 up
ip -n $ns link set pk0 up

in_ns() { ip netns exec "$1" "${@:2}"; }
start() { # NS READY-TEXT COMMAND...: start a server on CPU 0 and wait for READY-TEXT on its stdout
  local where=$1 ready=$2; shift 2
  out=$(mktemp)
  ip netns exec "$where" taskset -c 0 "$@" >"$out" 2>&1 &
  server=$!
  for _ in $(seq 100); do grep -q "$ready" "$out" 2>/dev/null && return 0; sleep 0.1; done
  echo "server did not start: $*" >&2; cat "$out" >&2; exit 1
}
stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
  grep "fata-monitor" "$out" || true
  rm -f "$out"
}
tcp() { # ADDR [-R]: iperf3 upload (download with -R) for $secs, receiver Gbit/s
  in_ns $ns taskset -c 1 iperf3 -c "$1" -t "$secs" -J "${@:2}" | python3 -c \
    'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
udp() { # ADDR:PORT: requests/s
  in_ns $ns taskset -c 1 "$load" udp-rr "$1" --seconds "$secs" | sed -E 's/.*: ([0-9]+) requests.*/\1/'
}

declare -A result
echo "bench/net: ${secs}s per run; servers on CPU 0, load on CPU 1; tap MTU 1500, veth MTU 1500"
echo "rows: kernel = iperf3 -s; socket = Fata unix on host sockets; direct = Fata unix on a tap;"
echo "      hvt = the unikernel on a tap; packet = the unikernel on AF_PACKET rings on a veth"

start $peer "Server listening" iperf3 -s -p 5201 --forceflush
result[tcp_kernel]=$(tcp 10.98.1.2); result[down_kernel]=$(tcp 10.98.1.2 -R); stop

start $peer "iperf: listening" "$iperf_unix" --bind 10.98.1.2
result[tcp_socket]=$(tcp 10.98.1.2); result[down_socket]=$(tcp 10.98.1.2 -R); stop
start $ns "iperf: listening" env FATA_NET=service=tap0 "$iperf_unix" --ipv4 10.98.0.2/24
result[tcp_direct]=$(tcp 10.98.0.2); result[down_direct]=$(tcp 10.98.0.2 -R); stop

start $peer "echo: serving" "$echo_unix" --bind 10.98.1.2
result[udp_socket]=$(udp 10.98.1.2:7); stop
start $ns "echo: serving" env FATA_NET=service=tap0 "$echo_unix" --ipv4 10.98.0.2/24
result[udp_direct]=$(udp 10.98.0.2:7); stop

if [ $hvt = 1 ]; then
  start $ns "iperf: listening" "$fata" run "$iperf_hvt" --net tap0 --stats -- --ipv4 10.98.0.2/24
  result[tcp_hvt]=$(tcp 10.98.0.2); result[down_hvt]=$(tcp 10.98.0.2 -R); stop
  start $ns "echo: serving" "$fata" run "$echo_hvt" --net tap0 --stats -- --ipv4 10.98.0.2/24
  result[udp_hvt]=$(udp 10.98.0.2:7); stop
  # One MAC for both guests on the veth: unlike a tap, whose link goes down with its guest, a veth
  # keeps the host's neighbour entry for the previous guest's MAC for a while.
  start $ns "iperf: listening" "$fata" run "$iperf_hvt" --net packet:pk0 --mac 02:00:00:00:98:02 --stats -- --ipv4 10.98.2.2/24
  result[tcp_packet]=$(tcp 10.98.2.2); result[down_packet]=$(tcp 10.98.2.2 -R); stop
  start $ns "echo: serving" "$fata" run "$echo_hvt" --net packet:pk0 --mac 02:00:00:00:98:02 --stats -- --ipv4 10.98.2.2/24
  result[udp_packet]=$(udp 10.98.2.2:7); stop
fi

printf '\n%-34s %12s %10s\n' "TCP upload (iperf3 -c, 1 stream)" "Gbit/s" "vs kernel"
for k in kernel socket direct hvt packet; do
  v=${result[tcp_$k]:-}; [ -z "$v" ] && continue
  printf '%-34s %12s %9.2fx\n' "$k" "$v" "$(python3 -c "print($v/${result[tcp_kernel]})")"
done
printf '\n%-34s %12s %10s\n' "TCP download (iperf3 -c -R, 1 stream)" "Gbit/s" "vs kernel"
for k in kernel socket direct hvt packet; do
  v=${result[down_$k]:-}; [ -z "$v" ] && continue
  printf '%-34s %12s %9.2fx\n' "$k" "$v" "$(python3 -c "print($v/${result[down_kernel]})")"
done
printf '\n%-34s %12s %10s\n' "UDP request-response (64 B, 32 in flight)" "req/s" "vs socket"
for k in socket direct hvt packet; do
  v=${result[udp_$k]:-}; [ -z "$v" ] && continue
  printf '%-34s %12s %9.2fx\n' "$k" "$v" "$(python3 -c "print($v/${result[udp_socket]})")"
done
