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

ON_EXIT=()  # commands a test adds for its own cleanup (e.g. `moat down` of its instance)
cleanup() {
  local l p c
  for c in "${ON_EXIT[@]}"; do eval "$c" >/dev/null 2>&1; done
  for p in "${SERVERS[@]}"; do stop_server "$p"; done
  for l in "${LABS[@]}"; do "$MOAT" lab down --name "$l" >/dev/null 2>&1; done
  rm -rf "$TMP"
}
trap cleanup EXIT
# A test stopped by a signal (Ctrl-C, a timeout's TERM, a reader of its
# output that went away) must still clean up: exiting runs the EXIT trap.
# Output is dropped first, so a closed pipe cannot stop the cleanup halfway.
trap 'exit 130' INT
trap 'exit 143' TERM HUP
trap 'exec >/dev/null 2>&1; exit 141' PIPE

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

# link_local LAB CONTAINER: the link-local address of its eth0 once DAD is
# done (bounded wait; empty if none came).
link_local() {
  local i a
  for i in $(seq 50); do
    a=$("$MOAT" lab exec --lab "$1" "$2" -- ip -6 -o addr show dev eth0 scope link |
      grep -v tentative | awk '{print $4}' | cut -d/ -f1)
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.1
  done
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
  [ ! -e "/run/moat/labs/$l.json" ] && [ ! -e "/run/moat/labs/$l.input" ] &&
  [ -z "$(ls -d /etc/netns/moat-"$l"-* 2>/dev/null)" ]
}

# check_probe_matrix LAB: `moat lab probe` observes exactly the expected matrix.
check_probe_matrix() {
  if "$MOAT" lab probe --lab "$1" >"$TMP/probe.txt" 2>&1; then
    ok "moat lab probe: observed matrix equals expected"
  else
    bad "moat lab probe: observed matrix equals expected"
    sed 's/^/    /' "$TMP/probe.txt"
  fi
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

# ---- segmentation policies (issue 4) -------------------------------------------------

# policy_apply LAB [FILE...]: `moat lab apply` must succeed (no FILE: back to
# the lab file's own policies, i.e. none for a file without policies).
policy_apply() {
  local lab=$1 desc
  shift
  local what="(no file: the lab file's policies)"
  [ $# -gt 0 ] && what=$*
  desc="moat lab apply $what"
  desc=${desc//$REPO\//}
  if "$MOAT" lab apply --lab "$lab" "$@" >"$TMP/apply.log" 2>&1; then
    ok "$desc"
  else
    bad "$desc (exit $?)"
    sed 's/^/    /' "$TMP/apply.log"
    return 1
  fi
}

# policy_rejected DESC LAB PATTERN FILE...: `moat lab apply` must fail (not
# crash: exit 1 or 2) with a message matching PATTERN (grep -Ei).
policy_rejected() {
  local desc=$1 lab=$2 pattern=$3 rc
  shift 3
  "$MOAT" lab apply --lab "$lab" "$@" >"$TMP/apply.log" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -le 2 ] && grep -Eqi -- "$pattern" "$TMP/apply.log"; then
    ok "$desc (exit $rc: $(grep -Ei -m1 -- "$pattern" "$TMP/apply.log" | cut -c1-150))"
  else
    bad "$desc (exit $rc, wanted non-zero and a message matching /$pattern/)"
    sed 's/^/    /' "$TMP/apply.log"
  fi
}

# policy_matrix DESC LAB LABFILE SCOPE TRUTH: runs `moat lab probe --json`
# and compares every row's "observed" with TRUTH, ignoring moat's own
# "expected" (that is the model under test). TRUTH is a Python expression
# evaluated per probe row with
#   s, d      source / destination container from LABFILE (attributes name,
#             ns, labels, pod = labels["pod"], app = labels["app"]) or None
#   src, dst  the row's "from" / "to" as printed (host, outside,
#             host@127.0.0.1, NAME@gateway / NAME@NETWORK, "NAME -p ...")
#   proto     tcp, udp or icmp;  port  (0 for icmp)
# giving True (must pass), False (must be dropped) or None (not checked).
# SCOPE pods: only container -> container rows, and every ordered pair of
# containers must have been probed; all: every row. Wrong cells are shown as
# a matrix per protocol/port (rows from, columns to; "." as expected, "X"
# wrong), then listed with the probe's detail.
policy_matrix() {
  local desc=$1 lab=$2 file=$3 scope=$4 truth=$5 rc
  "$MOAT" lab probe --lab "$lab" --json >"$TMP/probe.json" 2>"$TMP/probe.err"
  rc=$?
  if [ "$rc" -gt 1 ] || [ ! -s "$TMP/probe.json" ]; then
    bad "$desc (moat lab probe --json failed, exit $rc)"
    sed 's/^/    /' "$TMP/probe.err"
    return 1
  fi
  if python3 - "$file" "$scope" "$truth" "$TMP/probe.json" >"$TMP/matrix.txt" 2>&1 <<'PY'
import json, sys
from types import SimpleNamespace as NS
labfile, scope, truth, probefile = sys.argv[1:5]
cfg = json.load(open(labfile))
ctr, order = {}, []
for c in cfg.get("containers", []):
    labels = c.get("labels", {})
    ctr[c["name"]] = NS(name=c["name"], ns=c.get("namespace", "default"), labels=labels,
                        pod=labels.get("pod"), app=labels.get("app"),
                        multi=len(c.get("networks", [])) > 1, attached=bool(c.get("networks")))
    order.append(c["name"])
code = compile("(" + truth + ")", "truth table", "eval")
rows = [json.loads(l) for l in open(probefile) if l.strip()]
cells, wrong, seen, checked = {}, [], set(), 0
row_order, col_order = [], []
for r in rows:
    src, dst = r["from"], r["to"]
    dname = dst.split("@")[0] if "@" in dst else None
    s, d = ctr.get(src), ctr.get(dname) if dname else None
    if scope == "pods" and (s is None or d is None):
        continue
    want = eval(code, {}, dict(s=s, d=d, src=src, dst=dst, proto=r["proto"], port=r["port"]))
    if want is None:
        continue
    checked += 1
    seen.add((src, dname))
    got = r["observed"] == "pass"
    key = r["proto"] + ("" if r["proto"] == "icmp" else "/%d" % r["port"])
    col = dname if d is not None and not d.multi else dst
    if src not in row_order: row_order.append(src)
    if col not in col_order: col_order.append(col)
    grid = cells.setdefault(key, {})
    ok = bool(want) == got
    grid[(src, col)] = "." if ok and grid.get((src, col), ".") == "." else "X"
    if not ok:
        wrong.append("%s -> %s %s: expected %s, observed %s (%s)" % (
            src, dst, key, "pass" if want else "drop", "pass" if got else "drop", r.get("detail", "")))
if scope == "pods":
    for a in order:
        for b in order:
            if a != b and ctr[a].attached and ctr[b].attached and (a, b) not in seen:
                wrong.append("%s -> %s: not probed at all" % (a, b))
if checked == 0:
    wrong.append("no probe row was checked")
def sortkey(k):
    p, _, n = k.partition("/")
    return ({"tcp": 0, "udp": 1, "icmp": 2}.get(p, 3), int(n or 0))
for key in sorted(cells, key=sortkey):
    grid = cells[key]
    if "X" not in grid.values():
        continue
    cols = [c for c in col_order if any((r, c) in grid for r in row_order)]
    rank = lambda n: (order.index(n.split("@")[0]) if n.split("@")[0] in order else len(order), n)
    cols.sort(key=rank)
    row_order.sort(key=rank)
    w0 = max(len(r) for r in row_order) + 2
    print("%s  (rows: from, columns: to; . as expected, X wrong, - not probed)" % key)
    print(" " * w0 + " ".join(cols))
    for r in row_order:
        print(r.ljust(w0) + " ".join(grid.get((r, c), "-").center(len(c)) for c in cols))
for line in wrong[:24]:
    print("  " + line)
if len(wrong) > 24:
    print("  ... and %d more" % (len(wrong) - 24))
print("%d probes checked, %d wrong" % (checked, len(wrong)))
sys.exit(1 if wrong else 0)
PY
  then
    ok "$desc ($(tail -1 "$TMP/matrix.txt"))"
  else
    bad "$desc"
    sed 's/^/    /' "$TMP/matrix.txt"
    return 1
  fi
}

# Long-lived TCP connections, to see an established flow cut when a policy
# starts to deny it. conn_open NAME LAB SRC IP PORT: a socat in SRC keeps one
# connection open, fed from a FIFO the test holds open; answers go to a file.
# conn_ask NAME SECONDS: sends a line and waits (bounded) for a new answer
# line; 0 if one came, the answer in $REPLY_TEXT. conn_close NAME ends it
# (cleanup and `lab down` do in any case).
declare -A CONN_FD=() CONN_PID=()
conn_open() {
  local name=$1 lab=$2 src=$3 ip=$4 port=$5 fd
  rm -f "$TMP/conn-$name.in" "$TMP/conn-$name.out"
  mkfifo "$TMP/conn-$name.in"
  exec {fd}<>"$TMP/conn-$name.in"  # read-write: never blocks, never SIGPIPE
  : >"$TMP/conn-$name.out"
  timeout 120 "$MOAT" lab exec --lab "$lab" "$src" -- socat - "TCP:$ip:$port" \
    <"$TMP/conn-$name.in" >>"$TMP/conn-$name.out" 2>>"$TMP/conn-$name.err" &
  CONN_PID[$name]=$!
  CONN_FD[$name]=$fd
  SERVERS+=("$!")
}

conn_ask() {
  local name=$1 secs=$2 before i
  before=$(wc -l <"$TMP/conn-$name.out")
  REPLY_TEXT=
  echo probe >&"${CONN_FD[$name]}" || return 1
  for i in $(seq $(( secs * 20 ))); do
    if [ "$(wc -l <"$TMP/conn-$name.out")" -gt "$before" ]; then
      REPLY_TEXT=$(tail -1 "$TMP/conn-$name.out")
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# conn_answered NAME TOKEN SECONDS: sends the line TOKEN on connection NAME;
# 0 once the server's "ans:TOKEN" came back in time.
conn_answered() {
  local i
  echo "$2" >&"${CONN_FD[$1]}" || return 1
  for i in $(seq $(( $3 * 20 ))); do
    grep -qx "ans:$2" "$TMP/conn-$1.out" && return 0
    sleep 0.05
  done
  return 1
}

conn_alive() {  # conn_alive NAME: its socat still runs (the connection was not reset)
  kill -0 "${CONN_PID[$1]}" 2>/dev/null
}

conn_close() {
  local name=$1 fd=${CONN_FD[$1]:-}
  [ -n "$fd" ] && exec {fd}>&-
  stop_server "${CONN_PID[$name]}"
  unset "CONN_FD[$name]" "CONN_PID[$name]"
}
