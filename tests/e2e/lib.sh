# lib.sh - sourced by tests/e2e/test_*.sh. Drives the real `moat` CLI against
# labs of namespaces with real traffic. Deterministic on a busy 2-core VM:
# what must pass is retried a bounded number of times, what must be dropped
# gets one short attempt, listeners are waited for by `moat lab up` itself.
# Every lab is removed on exit, also when a check fails.
set -uo pipefail

MOAT=${1:?usage: $0 PATH_TO_MOAT}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
TEST_NAME=$(basename "$0" .sh)
PASSED=0
FAILED=0
LABS=()
SERVERS=()  # pids of background `moat lab exec ... socat` started by serve
TMP=$(mktemp -d /tmp/moat-e2e.XXXXXX)

cleanup() {
  local l p
  for p in "${SERVERS[@]}"; do stop_server "$p"; done
  for l in "${LABS[@]}"; do "$MOAT" lab down --name "$l" >/dev/null 2>&1; done
  rm -rf "$TMP"
}
trap cleanup EXIT

ok() { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
bad() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }

# A lab name unique per run and test: two runs never collide.
unique_lab() { echo "$1$$" | cut -c1-20; }

lab_up() {  # lab_up NAME FILE [extra args]
  local name=$1 file=$2
  shift 2
  LABS+=("$name")
  "$MOAT" lab up "$file" --name "$name" "$@" >"$TMP/up.log" 2>&1 || {
    cat "$TMP/up.log"
    bad "lab up $file"
    finish
  }
}

lab_down() {
  "$MOAT" lab down --name "$1" >/dev/null
}

# reach LAB SRC PROTO IP [PORT [EXPECTED_REPLY]] -> 0 if reached.
# TCP/UDP succeed only when the listener answers with the expected container
# name, so a reply from the wrong container does not count. SRC is a
# container, `host` or `outside`; IP may be a name (`localhost`), resolved
# in SRC's namespace. The last answer is left in $REPLY_TEXT.
REPLY_TEXT=
reach() {
  local lab=$1 src=$2 proto=$3 ip=$4 port=${5:-} want=${6:-} out n=-n
  [[ $ip =~ ^[0-9.]+$ ]] || n=
  case $proto in
    icmp) "$MOAT" lab exec --lab "$lab" "$src" -- ping $n -c1 -W1 "$ip" >/dev/null 2>&1 ;;
    tcp) out=$(echo probe | "$MOAT" lab exec --lab "$lab" "$src" -- nc $n -w1 "$ip" "$port" 2>/dev/null)
         REPLY_TEXT=$out
         [ -n "$out" ] && { [ -z "$want" ] || [ "$out" = "$want" ]; } ;;
    udp) out=$(echo probe | "$MOAT" lab exec --lab "$lab" "$src" -- nc $n -u -w1 "$ip" "$port" 2>/dev/null)
         REPLY_TEXT=$out
         [ -n "$out" ] && { [ -z "$want" ] || [ "$out" = "$want" ]; } ;;
  esac
}

must_pass() {  # must_pass DESCRIPTION reach-args...
  local desc=$1 i
  shift
  for i in 1 2 3; do
    if reach "$@"; then ok "$desc"; return 0; fi
  done
  bad "$desc (expected to pass: $*${REPLY_TEXT:+; got \"$REPLY_TEXT\"})"
}

must_drop() {
  local desc=$1
  shift
  if reach "$@"; then bad "$desc (expected to be dropped: $*; got \"$REPLY_TEXT\")"; else ok "$desc"; fi
}

check() {  # check DESCRIPTION command... : passes when the command succeeds
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else bad "$desc"; fi
}

# The IP of CONTAINER on NETWORK, from the resolved file.
ip_of() {  # ip_of FILE CONTAINER NETWORK
  "$MOAT" validate --json "$1" | python3 -c '
import json,sys
d=json.load(sys.stdin)
c=[c for c in d["containers"] if c["name"]==sys.argv[1]][0]
print([a["ip"] for a in c["networks"] if a["network"]==sys.argv[2]][0])' "$2" "$3"
}

# The gateway (the host's address on the bridge) of NETWORK, from the resolved file.
gateway_of() {  # gateway_of FILE NETWORK
  "$MOAT" validate --json "$1" | python3 -c '
import json,sys
print([n["gateway"] for n in json.load(sys.stdin)["networks"] if n["name"]==sys.argv[1]][0])' "$2"
}

# The subnet of NETWORK, from the resolved file.
subnet_of() {  # subnet_of FILE NETWORK
  "$MOAT" validate --json "$1" | python3 -c '
import json,sys
print([n["subnet"] for n in json.load(sys.stdin)["networks"] if n["name"]==sys.argv[1]][0])' "$2"
}

# The namespace of a lab target (a container, `host` or `outside`).
target_ns() {  # target_ns LAB TARGET
  case $2 in
    host) echo "moat-$1-host" ;;
    outside) echo "moat-$1-out" ;;
    *) echo "moat-$1-c-$2" ;;
  esac
}

# wait_listening LAB TARGET PROTO PORT: until something listens there (5 s).
wait_listening() {
  local ns i flag=-t
  ns=$(target_ns "$1" "$2")
  [ "$3" = udp ] && flag=-u
  for i in $(seq 100); do
    [ -n "$(ss -N "$ns" -H -l -n $flag "sport = :$4" 2>/dev/null)" ] && return 0
    sleep 0.05
  done
  echo "    nothing listens on $4/$3 in $2"
  return 1
}

# serve LAB TARGET PROTO PORT SOCAT-ARGS...: a socat of the test's own in
# TARGET (with `moat lab up --no-listeners`, or in `host`/`outside`), in the
# background, bounded to 120 s; returns once it listens. Its pid is in
# $SERVED; stop_server stops it, cleanup and `lab down` in any case.
SERVED=
serve() {
  local lab=$1 target=$2 proto=$3 port=$4
  shift 4
  timeout 120 "$MOAT" lab exec --lab "$lab" "$target" -- socat "$@" </dev/null \
    >>"$TMP/serve.log" 2>&1 &
  SERVED=$!
  SERVERS+=("$SERVED")
  wait_listening "$lab" "$target" "$proto" "$port"
}

# stop_server PID: the socat under it (timeout -> moat -> socat), then itself.
stop_server() {
  local p=$1 kids grandkids
  kids=$(cat /proc/"$p"/task/*/children 2>/dev/null)
  for k in $kids; do
    grandkids=$(cat /proc/"$k"/task/*/children 2>/dev/null)
    [ -n "$grandkids" ] && kill $grandkids 2>/dev/null
  done
  kill "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}

# wait_exit PID SECONDS: until the background job PID has exited.
wait_exit() {
  local i
  for i in $(seq $(( $2 * 10 ))); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
    sleep 0.1
  done
  return 1
}

# No socket listens in the lab host: published ports are served by the
# kernel, not by a proxy process (docker-proxy).
host_listens_nothing() {
  local out
  out=$(ss -N "moat-$1-host" -H -l -n -t -u) || { echo "    ss failed"; return 1; }
  [ -z "$out" ] || { echo "    listening in the lab host:"; echo "$out" | sed 's/^/      /'; return 1; }
}

# drops LAB REASON -> sum of that drop reason over all endpoints, both ways.
drops() {
  "$MOAT" lab status --lab "$1" --json | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(e["counters"][k]["drops"].get(sys.argv[1],0) for e in d["endpoints"] for k in ("from_container","to_container")))' "$2"
}

no_firewall_rules() {  # no iptables or nftables rule in the lab host
  local ns=moat-$1-host n=0
  command -v iptables-save >/dev/null && command -v nft >/dev/null || {
    echo "    iptables-save and nft are needed to check for rules"; return 1; }
  n=$(( $(ip netns exec "$ns" iptables-save 2>/dev/null | grep -c '^-A' || true) +
        $(ip netns exec "$ns" nft list ruleset 2>/dev/null | grep -c 'chain' || true) ))
  [ "$n" -eq 0 ]
}

no_residue() {  # nothing of the lab left: namespaces, pins, state, /etc/netns
  local l=$1
  [ -z "$(ip netns list | grep "^moat-$l-")" ] &&
  [ ! -e "/sys/fs/bpf/moat/lab-$l" ] && [ ! -e "/run/moat/lab-$l" ] &&
  [ ! -e "/run/moat/labs/$l.json" ] && [ -z "$(ls -d /etc/netns/moat-"$l"-* 2>/dev/null)" ]
}

# check_probe_matrix LAB: `moat lab probe` observes exactly the expected matrix.
check_probe_matrix() {
  check "moat lab probe: observed matrix equals expected" \
    bash -c "'$MOAT' lab probe --lab '$1' >'$TMP/probe.txt'"
  grep -q "0 unexpected" "$TMP/probe.txt" || cat "$TMP/probe.txt"
}

# down_and_finish LAB: tear the lab down, check nothing is left, report.
down_and_finish() {
  lab_down "$1"
  check "lab down leaves no namespace, pin, state or hosts file" no_residue "$1"
  finish
}

finish() {
  echo "$TEST_NAME: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && exit 0
  exit 1
}
