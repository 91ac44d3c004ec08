#!/usr/bin/env bash
# bench-docker.sh - how fast `moat docker` follows a real dockerd: the delay
# from a container's start to its enforcement, and the cost of a full sync
# with many containers. Runs on a private dockerd in namespaces of its own
# (tests/e2e/docker_lib.sh); nothing of the machine's network or Docker is
# touched. Not a test: it measures, and fails only when it cannot measure.
#
#   scripts/bench-docker.sh                 full run: N=200 starts, M=500 containers, R=3
#   scripts/bench-docker.sh -n 20 -m 30     small sizes (a busy or small machine)
#   --starts N       latency: containers started one by one with the agent running (200)
#   --containers M   full sync: containers started with the agent stopped (500)
#   --rounds R       full sync: cold + steady-state sync pairs over the same M (3)
#   --loaded-starts L   latency again with the M containers running (20; 0: none)
#   --networks K     user bridge networks, containers spread round-robin (2)
#   --start-jobs J   parallel `docker run -d` when starting the M containers (1)
#   --poll-us U      poll interval of the enforcement poller, microseconds (1000)
#   --gap-ms G       pause after each enforced start before the next one (100)
#   --timeout S      seconds a start may take to be enforced before it counts as lost (30)
#   --only latency|sync   one of the two parts
#   --moat PATH      the moat binary (default: $MOAT, else the build's, $MOAT_BUILD/userspace/moat)
#   --build          build first (scripts/common.sh), as bench.sh does
#   --out FILE       results JSON there instead of stdout; the summary goes to stderr
#   --keep-work      keep the work directory (agent log, raw samples) and print its path
#
# Figures (all times in ms unless the key ends in _s):
#   latency.enforce_ms   start event -> enforced, per start. "start event" is
#       dockerd's timeNano of the container's `start` event (docker events);
#       "enforced" is the first poll that sees both moat's TC filters
#       (handle 0x6d6f, ingress and egress) on the container's host-side veth
#       AND its entry (key: that veth's ifindex) in the instance's pinned
#       `endpoints` map. p50/p90/p99 interpolate linearly between order
#       statistics; mean_ci95 is a percentile bootstrap (10000 resamples,
#       fixed seed). The poller sits in dockerd's network namespace, learns
#       new veths from rtnetlink (no polling while none is pending) and polls
#       only pending ones, every --poll-us: bpf(2) lookups on the pin and one
#       RTM_GETTFILTER dump per hook, no process started per poll. Its
#       measured period is latency.poll (the resolution of every figure).
#       Also: veth_created/map_entry/tc_attached/docker_run_returned relative
#       to the start event, and the trend of the latency with the number of
#       containers already running (each event lists every container; only changed
#       ones are inspected again).
#   latency.agent_kernel_ms  the agent's decision to the kernel holding the change
#   latency.agent_apply_ms   the agent's own figure per sync that changed
#       something: from its decision (the desired state handed to
#       reconcile()) to the kernel holding it and the record saved ("applied
#       in X ms" in its log); the first sync, which made the instance, is
#       agent_first_apply_ms.
#   latency_loaded       the same figures for --loaded-starts starts made
#       after the sync part, with the M containers running.
#   sync.rounds[].cold   `moat docker --once --json` with M containers and no
#       instance (`moat down` before): list, inspect each, find each veth,
#       load, attach M veths. wall_s, user_s, sys_s, max_rss_kb of moat.
#   sync.rounds[].steady the same right after (nothing changed).
#   sync.docker_start    docker's own time to start the M containers, the
#       reference (containers/s), and `docker inspect` of all M at once.
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"

N=200 M=500 L=20 R=3 K=2 J=1 POLL_US=1000 GAP_MS=100 TIMEOUT=30 ONLY="" OUT="" KEEP=0 DO_BUILD=0
MOAT=${MOAT:-$MOAT_BIN}
while [ $# -gt 0 ]; do
  case $1 in
    -n|--starts) N=${2:?}; shift ;;
    -m|--containers) M=${2:?}; shift ;;
    --rounds) R=${2:?}; shift ;;
    --loaded-starts) L=${2:?}; shift ;;
    --networks) K=${2:?}; shift ;;
    --start-jobs) J=${2:?}; shift ;;
    --poll-us) POLL_US=${2:?}; shift ;;
    --gap-ms) GAP_MS=${2:?}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift ;;
    --only) ONLY=${2:?}; shift ;;
    --moat) MOAT=${2:?}; shift ;;
    --build) DO_BUILD=1 ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    --keep-work) KEEP=1 ;;
    -h|--help) sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-docker.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in N M L R K J POLL_US GAP_MS TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench-docker.sh: $v must be a number" >&2; exit 2; }
done
case $ONLY in ""|latency|sync) ;; *) echo "bench-docker.sh: --only latency|sync" >&2; exit 2 ;; esac
[ "$K" -ge 1 ] && [ "$R" -ge 1 ] && [ "$J" -ge 1 ] || { echo "bench-docker.sh: --networks, --rounds, --start-jobs >= 1" >&2; exit 2; }

need_root
note_bpffs
if [ "$DO_BUILD" = 1 ]; then install_missing && build; MOAT=$MOAT_BIN; fi
[ -x "$MOAT" ] || { echo "bench-docker.sh: no moat binary at $MOAT (--moat PATH, or --build)" >&2; exit 2; }

bench_log() { printf 'bench-docker: %s\n' "$*" >&2; }

# docker_lib.sh's EXIT trap calls `cleanup` (lib.sh's); lib.sh itself is not
# sourced: it wants the test calling conventions ($1, ok/bad counters).
cleanup() { :; }
source "$MOAT_ROOT/tests/e2e/docker_lib.sh"

NAME=bd$$
I=bd$$
W=$(mktemp -d /tmp/moat-bench-docker.XXXXXX)
AGENT="" POLLER="" EVENTS="" PF=""

stop_pid() {  # stop_pid PID: TERM, then KILL after 10 s; only our own children
  local p=$1 i
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
stop_agent() {
  stop_pid "$AGENT"; AGENT=""
  [ -n "${DK_NETNS:-}" ] && [ -e "$DK_NETNS" ] && nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
  return 0
}
teardown() {
  trap - EXIT INT TERM HUP PIPE
  stop_pid "$POLLER"; POLLER=""
  stop_pid "$EVENTS"; EVENTS=""
  stop_agent
  docker_down_all
  [ -n "$PF" ] && exec {PF}>&-
  if [ "$KEEP" = 1 ]; then bench_log "work directory kept: $W"; else rm -rf "$W"; fi
  restore_bpffs
}
trap teardown EXIT
# A signal still runs the cleanup; a closed output pipe must not stop it halfway.
trap 'exit 130' INT
trap 'exit 143' TERM HUP
trap 'exec >/dev/null 2>&1; exit 141' PIPE

die() { bench_log "error: $*"; exit 1; }

# ---- helpers written to the work directory --------------------------------

# The poller: runs in dockerd's network namespace. Prints one line per
# enforced veth: ifindex ifname t_created t_map t_tc t_both (ns, CLOCK_REALTIME
# like dockerd's timeNano), flushed at once: the driver waits on it.
cat >"$W/poller.py" <<'PY'
import ctypes, json, os, platform, select, signal, socket, struct, sys, time

pin, interval_us, stats_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
interval = interval_us / 1e6
libc = ctypes.CDLL(None, use_errno=True)
NR_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
BPF_MAP_LOOKUP_ELEM, BPF_OBJ_GET = 1, 7
TC_HANDLE = 0x6d6f  # moat's filters (dataplane/tc.cpp)
HOOKS = (0xFFFFFFF2, 0xFFFFFFF3)  # clsact ingress, egress
RTM_NEWLINK, RTM_DELLINK, RTM_NEWTFILTER, RTM_GETTFILTER = 16, 17, 44, 46
NLMSG_DONE, NLMSG_ERROR = 3, 2

def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    return libc.syscall(NR_BPF, cmd, buf, 128)

pin_buf = ctypes.create_string_buffer(pin.encode())
def map_fd():
    return bpf(BPF_OBJ_GET, struct.pack("=QII", ctypes.addressof(pin_buf), 0, 0))

key = ctypes.create_string_buffer(4)
val = ctypes.create_string_buffer(4096)  # larger than any value: the kernel copies value_size
def in_map(fd, ifindex):
    struct.pack_into("=I", key, 0, ifindex)
    return bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("=IIQQQ", fd, 0, ctypes.addressof(key),
                                                 ctypes.addressof(val), 0)) == 0

def attrs(data, off, end):
    while off + 4 <= end:
        ln, ty = struct.unpack_from("=HH", data, off)
        if ln < 4:
            break
        yield ty & 0x3fff, data[off + 4:off + ln]
        off += (ln + 3) & ~3

def messages(data):
    off = 0
    while off + 16 <= len(data):
        ln, ty, fl, seq, pid = struct.unpack_from("=IHHII", data, off)
        if ln < 16:
            break
        yield ty, data[off + 16:off + ln]
        off += (ln + 3) & ~3

req = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
req.bind((0, 0))
seq = 0
def has_filter(ifindex, parent):
    global seq
    seq += 1
    body = struct.pack("=BxxxiIII", 0, ifindex, 0, parent, 0)
    req.send(struct.pack("=IHHII", 16 + len(body), RTM_GETTFILTER, 0x301, seq, 0) + body)
    found = False
    while True:
        for ty, m in messages(req.recv(65536)):
            if ty in (NLMSG_DONE, NLMSG_ERROR):
                return found
            if ty == RTM_NEWTFILTER and struct.unpack_from("=I", m, 8)[0] == TC_HANDLE:
                found = found or any(t == 1 and v.rstrip(b"\0") == b"bpf" for t, v in attrs(m, 20, len(m)))

mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
mon.bind((0, 1))  # RTMGRP_LINK

def link_event(ty, m):
    idx = struct.unpack_from("=i", m, 4)[0]
    name, kind = "", b""
    for t, v in attrs(m, 16, len(m)):
        if t == 3:
            name = v.rstrip(b"\0").decode()
        elif t == 18:  # IFLA_LINKINFO
            for t2, v2 in attrs(v, 0, len(v)):
                if t2 == 1:
                    kind = v2.rstrip(b"\0")
    return idx, name, kind

pending, done = {}, set()
polls = rounds = 0
busy = 0.0
gaps = []
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
last_round = None
print("ready", flush=True)
try:
    while not stop:
        # Fixed rate while something is pending: the period stays --poll-us
        # however long a round took, unless a round takes longer.
        wait = max(0.0, last_round + interval - time.monotonic()) if pending and last_round is not None else \
            (0.0 if pending else 0.5)
        r, _, _ = select.select([mon], [], [], wait)
        now = time.time_ns()
        if r:
            while True:
                try:
                    data = mon.recv(1 << 16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                for ty, m in messages(data):
                    if ty == RTM_NEWLINK:
                        idx, name, kind = link_event(ty, m)
                        if kind == b"veth" and idx not in done and idx not in pending:
                            pending[idx] = {"name": name, "created": now, "map": 0, "tc": 0}
                        elif idx in pending and name:
                            pending[idx]["name"] = name
                    elif ty == RTM_DELLINK:
                        pending.pop(struct.unpack_from("=i", m, 4)[0], None)
        if not pending:
            last_round = None
            continue
        t0 = time.monotonic()
        if last_round is not None and t0 < last_round + interval:
            continue  # woken by a link event between two rounds
        if last_round is not None:
            gaps.append(t0 - last_round)
        last_round = t0
        rounds += 1
        now = time.time_ns()
        fd = map_fd()  # each round: a sync may pin a new map in the instance
        for idx in list(pending):
            p = pending[idx]
            polls += 1
            if not p["map"] and fd >= 0 and in_map(fd, idx):
                p["map"] = now
            if not p["tc"] and all(has_filter(idx, h) for h in HOOKS):
                p["tc"] = now
            if p["map"] and p["tc"]:
                print(idx, p["name"] or "?", p["created"], p["map"], p["tc"], now, flush=True)
                done.add(idx)
                del pending[idx]
        if fd >= 0:
            os.close(fd)
        busy += time.monotonic() - t0
finally:
    gaps.sort()
    json.dump({"interval_us": interval_us, "rounds": rounds, "lookups": polls,
               "busy_s": round(busy, 4), "mean_round_cost_us": round(1e6 * busy / rounds, 1) if rounds else None,
               "period_mean_us": round(1e6 * sum(gaps) / len(gaps), 1) if gaps else None,
               "period_p99_us": round(1e6 * gaps[int(0.99 * (len(gaps) - 1))], 1) if gaps else None,
               "never_enforced_veths": len(pending)},
              open(stats_file, "w"))
PY

# timed.py OUT -- CMD...: CMD's stdout to OUT, its wall time and resources
# (of CMD alone: nsenter execs moat) as one JSON line on stdout.
cat >"$W/timed.py" <<'PY'
import json, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[3:]
t0 = time.monotonic()
with open(out, "w") as f:
    rc = subprocess.call(cmd, stdout=f)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": round(wall, 4), "user_s": round(ru.ru_utime, 3), "sys_s": round(ru.ru_stime, 3),
                  "max_rss_kb": ru.ru_maxrss, "exit": rc}))
PY

# ---- the run ---------------------------------------------------------------
T_BEGIN=$EPOCHREALTIME
bench_log "moat $MOAT, work directory $W"
avail_mb=$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)
# A busybox container with its containerd shim takes ~15 MiB here; leave room.
need_mb=$(( (M > N ? M : N) * 20 + 1024 ))
[ "$avail_mb" -ge "$need_mb" ] || die "only ${avail_mb} MiB available, ${need_mb} MiB wanted for $(( M > N ? M : N )) containers"

bench_log "starting a private dockerd ($NAME)"
docker_up "$NAME" || die "docker_up failed"
bench_log "dockerd up in ${DK_UP_SECONDS}s"
for k in $(seq 0 $((K - 1))); do dk network create "bench$k" >/dev/null || die "network create bench$k"; done
dk version --format '{{json .}}' >"$W/docker-version.json" 2>/dev/null

start_agent() {
  nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink "$DK_UPLINK" \
    2>>"$W/agent.log" &
  AGENT=$!
}
run_one() {  # run_one NAME NETWORK: prints the container id
  dk run -d --name "$1" --network "$2" --log-driver none "$DK_IMAGE" sleep 100000
}

# latency_run TAG COUNT: COUNT containers (TAG1..TAGCOUNT) start one at a
# time while the agent runs; each next start waits for the previous one to be
# enforced (plus --gap-ms), so a figure is one start's delay, not a queue's.
# Raw data in $W/TAG-*.
latency_run() {
  local tag=$1 count=$2 i t0 t1 cid line v cpu0 cpu1
  DOCKER_CONFIG=$DK_DIR/cli "$DK_CLI" -H "unix://$DK_SOCK" events --filter type=container \
    --filter event=start --format '{{json .}}' >"$W/$tag-events.jsonl" 2>"$W/$tag-events.err" &
  EVENTS=$!
  nsenter --net="$DK_NETNS" python3 "$W/poller.py" "/sys/fs/bpf/moat/$I/endpoints" "$POLL_US" \
    "$W/$tag-poller-stats.json" >&"$PF" 2>"$W/$tag-poller.err" &
  POLLER=$!
  read -r -t 30 -u "$PF" line && [ "$line" = ready ] || die "the poller did not start: $(cat "$W/$tag-poller.err")"
  : >"$W/agent.log"
  start_agent
  dk_poll 60 test -e "/sys/fs/bpf/moat/$I/endpoints" || die "the agent made no instance: $(tail -5 "$W/agent.log")"
  # The agent's first sync (all containers already running) must be over
  # before the first start, or that start would wait behind it.
  dk_poll 120 agent_enforces "$(dk ps -q | wc -l)" || die "the agent did not enforce the running containers"
  sleep 1
  cpu0=$(proc_cpu "$AGENT")
  : >"$W/$tag-runs.tsv"
  for i in $(seq "$count"); do
    t0=$EPOCHREALTIME
    cid=$(run_one "$tag$i" "bench$(( (i - 1) % K ))") || die "docker run $tag$i failed"
    t1=$EPOCHREALTIME
    if read -r -t "$TIMEOUT" -u "$PF" line; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$i" "$cid" "$t0" "$t1" "$line" >>"$W/$tag-runs.tsv"
    else
      printf '%s\t%s\t%s\t%s\t%s\n' "$i" "$cid" "$t0" "$t1" "lost" >>"$W/$tag-runs.tsv"
      bench_log "start $tag$i ($cid) not enforced within ${TIMEOUT}s"
    fi
    [ $((i % 20)) = 0 ] && bench_log "  $i/$count started"
    sleep "$((GAP_MS / 1000)).$(printf %03d $((GAP_MS % 1000)))"
  done
  sleep 1
  cpu1=$(proc_cpu "$AGENT")
  echo "$(( cpu1 - cpu0 ))" >"$W/$tag-agent-cpu-ticks"
  stop_pid "$POLLER"; POLLER=""
  stop_pid "$EVENTS"; EVENTS=""
  # Which veth is whose, now that timing is over (dk_host_veth forks a few
  # processes per container): the join is by ifindex, never by order.
  dk_host ip -j link show >"$W/$tag-host-links.json"
  : >"$W/$tag-veths.tsv"
  for i in $(seq "$count"); do
    v=$(dk_host_veth "$tag$i") || v="?"
    printf '%s%s\t%s\t%s\n' "$tag" "$i" "$(dk inspect -f '{{.Id}}' "$tag$i")" "$v" >>"$W/$tag-veths.tsv"
  done
  nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json >"$W/$tag-status.json" 2>/dev/null
  stop_agent
  cp "$W/agent.log" "$W/$tag-agent.log"
  : >"$W/agent.log"
  dk rm -f $(seq -f "$tag%g" "$count") >/dev/null
  return 0
}
proc_cpu() {  # utime + stime of PID, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
agent_enforces() {  # agent_enforces N: the instance has N endpoints
  [ "$(nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
       python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null)" = "$1" ]
}
mkfifo "$W/poll.fifo"
exec {PF}<>"$W/poll.fifo"  # read-write: never blocks either side

# Part 1: latency from (almost) nothing: 0 .. N-1 containers running.
if [ "$ONLY" != sync ] && [ "$N" -gt 0 ]; then
  bench_log "latency: $N starts on $K networks, poll every ${POLL_US} us"
  latency_run lat "$N"
fi

# Part 2: full sync with the agent stopped.
if [ "$ONLY" != latency ] && [ "$M" -gt 0 ]; then
  bench_log "sync: starting $M containers with the agent stopped ($J at a time)"
  t0=$EPOCHREALTIME
  seq "$M" | xargs -P "$J" -I{} bash -c '
    k=$(( ({} - 1) % '"$K"' ))
    DOCKER_CONFIG='"$DK_DIR"'/cli '"$DK_CLI"' -H unix://'"$DK_SOCK"' run -d --name sync{} \
      --network bench$k --log-driver none '"$DK_IMAGE"' sleep 100000 >/dev/null' ||
    die "starting the $M containers failed"
  t1=$EPOCHREALTIME
  running=$(dk ps -q | wc -l)
  [ "$running" = "$M" ] || die "$running containers running, $M wanted"
  printf '{"containers": %s, "jobs": %s, "wall_s": %s}\n' "$M" "$J" \
    "$(python3 -c "print(round($t1 - $t0, 3))")" >"$W/docker-start.json"
  t0=$EPOCHREALTIME
  dk inspect $(dk ps -q) >/dev/null
  t1=$EPOCHREALTIME
  python3 -c "print(round($t1 - $t0, 4))" >"$W/docker-inspect.txt"
  : >"$W/syncs.jsonl"
  for r in $(seq "$R"); do
    nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
    for kind in cold steady; do
      res=$(python3 "$W/timed.py" "$W/sync-$r-$kind.json" -- nsenter --net="$DK_NETNS" "$MOAT" docker \
        --socket "$DK_SOCK" --instance "$I" --uplink "$DK_UPLINK" --once --json 2>>"$W/sync-stderr.log")
      printf '{"round": %s, "kind": "%s", "time": %s, "report": %s}\n' "$r" "$kind" "$res" \
        "$(cat "$W/sync-$r-$kind.json" 2>/dev/null | python3 -c 'import json,sys
try: print(json.dumps(json.load(sys.stdin)))
except Exception: print("null")')" >>"$W/syncs.jsonl"
      bench_log "  round $r $kind: $(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])') s"
    done
  done
  nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json >"$W/status-sync.json" 2>/dev/null
  # A container that stopped during the rounds would make the syncs smaller.
  dk ps -a --format '{{.Names}}\t{{.Status}}' >"$W/sync-ps.tsv"
  stop_agent
  if [ "$L" -gt 0 ]; then
    bench_log "latency with $M containers running: $L starts"
    latency_run load "$L"
  fi
fi
T_END=$EPOCHREALTIME

# ---- report ----------------------------------------------------------------
commit=$(git -C "$MOAT_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=false
[ -n "$(git -C "$MOAT_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && dirty=true
python3 - "$W" "$N" "$M" "$R" "$K" "$J" "$POLL_US" "$GAP_MS" "$commit" "$dirty" "$MOAT" "$ONLY" \
  "$T_BEGIN" "$T_END" "$L" >"$W/results.json" <<'PY' || die "report failed"
import json, os, platform, random, re, statistics, sys
W, N, M, R, K, J, POLL_US, GAP_MS, commit, dirty, moat, only, tb, te, L = sys.argv[1:16]
def load(p, default=None):
    try:
        return json.load(open(os.path.join(W, p)))
    except Exception:
        return default
def text(p):
    try:
        return open(os.path.join(W, p)).read()
    except OSError:
        return ""

def pct(s, p):  # linear interpolation between order statistics (numpy's default)
    if not s:
        return None
    x = (len(s) - 1) * p / 100
    lo = int(x)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (x - lo)

def boot(xs, stat, n=10000, seed=1):
    rnd = random.Random(seed)
    k = len(xs)
    v = sorted(stat([xs[rnd.randrange(k)] for _ in range(k)]) for _ in range(n))
    return [r3(v[int(0.025 * n)]), r3(v[int(0.975 * n) - 1])]

def r3(v):
    return None if v is None else round(v, 3)

def dist(xs):
    s = sorted(xs)
    if not s:
        return {"n": 0}
    d = {"n": len(s), "p50": r3(pct(s, 50)), "p90": r3(pct(s, 90)), "p99": r3(pct(s, 99)),
         "min": r3(s[0]), "max": r3(s[-1]), "mean": r3(statistics.fmean(s))}
    if len(s) >= 2:
        d["stdev"] = r3(statistics.stdev(s))
        d["mean_ci95"] = boot(s, statistics.fmean)
        d["p50_ci95"] = boot(s, lambda v: pct(sorted(v), 50), n=2000)
    return d

ver = load("docker-version.json", {}) or {}
res = {
    "benchmark": "moat docker",
    "machine": {
        "nproc": os.cpu_count(), "kernel": platform.release(),
        "mem_total_mib": int(open("/proc/meminfo").read().split()[1]) // 1024,
        "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
        "docker_server": ver.get("Server", {}).get("Version"),
        "docker_api": ver.get("Server", {}).get("ApiVersion"),
        "containerd": next((c.get("Version") for c in ver.get("Server", {}).get("Components", [])
                            if c.get("Name") == "containerd"), None),
        "moat_commit": commit, "moat_tree_dirty": dirty == "true", "moat_binary": moat,
        "moat_binary_mtime": os.path.getmtime(moat) if os.path.exists(moat) else None,
    },
    "options": {"starts": int(N), "containers": int(M), "loaded_starts": int(L), "rounds": int(R), "networks": int(K),
                "start_jobs": int(J), "poll_us": int(POLL_US), "gap_ms": int(GAP_MS), "only": only or None},
    "wall_s": round(float(te) - float(tb), 1),
}

def latency(tag, running0):
    events = {}
    for l in text(tag + "-events.jsonl").splitlines():
        try:
            e = json.loads(l)
        except ValueError:
            continue
        events.setdefault(e.get("id") or e.get("Actor", {}).get("ID"), int(e["timeNano"]))
    idx_of_name = {l["ifname"]: l["ifindex"] for l in json.loads(text(tag + "-host-links.json") or "[]")}
    veth_of = {}
    for l in text(tag + "-veths.tsv").splitlines():
        name, cid, veth = l.split("\t")
        veth_of[cid] = idx_of_name.get(veth)
    enforced, runs = {}, []
    for l in text(tag + "-runs.tsv").splitlines():
        f = l.split("\t")
        runs.append(f)
        if f[4] != "lost":
            idx, name, created, tmap, ttc, both = f[4].split()
            enforced[int(idx)] = dict(name=name, created=int(created), map=int(tmap), tc=int(ttc), both=int(both))
    rows, problems = [], []
    for f in runs:
        i, cid, t0, t1 = int(f[0]), f[1], float(f[2]), float(f[3])
        ev = events.get(cid)
        idx = veth_of.get(cid)
        e = enforced.get(idx)
        if ev is None:
            problems.append(f"start {i}: no start event for {cid[:12]}")
            continue
        if e is None:
            problems.append(f"start {i}: {cid[:12]} (host ifindex {idx}) never seen enforced")
            continue
        ms = lambda ns: (ns - ev) / 1e6
        rows.append({"i": i, "running_before": running0 + i - 1, "enforce_ms": ms(e["both"]),
                     "map_entry_ms": ms(e["map"]), "tc_attached_ms": ms(e["tc"]),
                     "veth_created_ms": ms(e["created"]),
                     "docker_run_returned_ms": (t1 * 1e9 - ev) / 1e6, "docker_run_ms": (t1 - t0) * 1e3})
    lat = {"definition": "dockerd start event timeNano -> first poll seeing moat's TC filters (ingress+egress) "
                         "on the host veth and the veth's ifindex in the pinned endpoints map",
           "ci_method": "percentile bootstrap of the mean (10000 resamples) and of p50 (2000), seed 1; "
                        "percentiles interpolate linearly",
           "containers_running_at_first_start": running0,
           "poll": load(tag + "-poller-stats.json")}
    for key in ("enforce_ms", "veth_created_ms", "map_entry_ms", "tc_attached_ms", "docker_run_returned_ms", "docker_run_ms"):
        lat[key] = dist([r[key] for r in rows])
    lat["enforced_before_docker_run_returned"] = sum(r["enforce_ms"] < r["docker_run_returned_ms"] for r in rows)
    if len(rows) >= 8:
        q = len(rows) // 4
        xs = [r["running_before"] for r in rows]
        ys = [r["enforce_ms"] for r in rows]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        lat["trend"] = {"p50_first_quarter_ms": r3(pct(sorted(ys[:q]), 50)),
                        "p50_last_quarter_ms": r3(pct(sorted(ys[-q:]), 50)),
                        "slope_ms_per_running_container": r3(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx) if sxx else None}
    lat["lost"] = sum(1 for f in runs if f[4] == "lost")
    lat["problems"] = problems
    st = load(tag + "-status.json", {}) or {}
    lat["endpoints_in_status_at_end"] = len(st.get("endpoints", [])) if st else None
    try:
        ticks = int(text(tag + "-agent-cpu-ticks"))
        lat["agent_cpu_ms_per_start"] = r3(1000 * ticks / os.sysconf("SC_CLK_TCK") / max(1, len(runs)))
    except ValueError:
        pass
    log = text(tag + "-agent.log").splitlines()
    lat["agent_log"] = {"lines": len(log), "synced_lines": sum("synced" in l for l in log),
                        "failures": [l for l in log if "fail" in l or "error" in l.lower()][:20]}
    # The agent's own figure: its decision (the desired state handed to
    # reconcile) to the kernel holding it and the record saved, per sync
    # that changed something ("(applied in X ms)" in its log).
    # The first one made the instance (programs loaded): reported apart.
    # "in the kernel in K ms": the same up to the kernel holding the change.
    applied = [float(m.group(1)) for m in (re.search(r"applied in ([0-9.]+) ms[:)]", l) for l in log) if m]
    kernel = [float(m.group(1)) for m in (re.search(r"in the kernel in ([0-9.]+) ms", l) for l in log) if m]
    lat["agent_first_apply_ms"] = r3(applied[0]) if applied else None
    lat["agent_apply_ms"] = dist(applied[1:]) if len(applied) > 1 else None
    lat["agent_first_kernel_ms"] = r3(kernel[0]) if kernel else None
    lat["agent_kernel_ms"] = dist(kernel[1:]) if len(kernel) > 1 else None
    lat["samples_ms"] = [r3(r["enforce_ms"]) for r in rows]
    return lat

if only != "sync" and int(N) > 0:
    res["latency"] = latency("lat", 0)
if only != "latency" and int(M) > 0 and int(L) > 0:
    res["latency_loaded"] = latency("load", int(M))

if only != "latency" and int(M) > 0:
    syncs = [json.loads(l) for l in text("syncs.jsonl").splitlines() if l.strip()]
    rounds = {}
    for s in syncs:
        rep = s["report"] or {}
        rounds.setdefault(s["round"], {})[s["kind"]] = dict(
            s["time"], changed=rep.get("changed"), containers_enforced=rep.get("containers_enforced"),
            networks_enforced=rep.get("networks_enforced"), endpoints_pending=rep.get("endpoints_pending"),
            skipped=rep.get("skipped"))
    ds = load("docker-start.json", {}) or {}
    sy = {"rounds": [dict(round=r, **v) for r, v in sorted(rounds.items())]}
    for kind in ("cold", "steady"):
        w = [v[kind]["wall_s"] for v in rounds.values() if kind in v]
        sy[kind + "_wall_s"] = {"mean": r3(statistics.fmean(w)) if w else None, "min": r3(min(w)) if w else None,
                                "max": r3(max(w)) if w else None, "n": len(w)}
        if w:
            sy[kind + "_ms_per_container"] = r3(1000 * statistics.fmean(w) / int(M))
    sy["docker_start"] = dict(ds, containers_per_s=r3(ds["containers"] / ds["wall_s"]) if ds.get("wall_s") else None,
                              inspect_all_wall_s=float(text("docker-inspect.txt") or "nan"))
    ok = all(v.get("exit") == 0 and v.get("containers_enforced") == int(M) and v.get("endpoints_pending") == 0
             for r in rounds.values() for v in r.values())
    ok = ok and all(r.get("steady", {}).get("changed") is False for r in rounds.values())
    sy["all_enforced_and_steady_unchanged"] = ok
    st = load("status-sync.json", {}) or {}
    sy["endpoints_in_status_at_end"] = len(st.get("endpoints", [])) if st else None
    sy["containers_not_running_after_rounds"] = [l for l in text("sync-ps.tsv").splitlines() if "\tUp " not in l]
    sy["moat_stderr"] = text("sync-stderr.log").splitlines()[:20]
    res["sync"] = sy
json.dump(res, sys.stdout, indent=1)
print()
PY

# The summary, for people.
python3 - "$W/results.json" >&2 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["machine"]
print(f"bench-docker: {m['nproc']} CPUs, kernel {m['kernel']}, docker {m['docker_server']}, "
      f"moat {m['moat_commit'][:12]}{' (dirty tree)' if m['moat_tree_dirty'] else ''}")
for key, title in (("latency", "from nothing"), ("latency_loaded", "with the M containers running")):
    l = r.get(key)
    if not l:
        continue
    print(f"  latency {title} ({l['containers_running_at_first_start']} running at the first start):")
    e = l["enforce_ms"]
    p = l.get("poll") or {}
    if e.get("n"):
        print(f"    start event -> enforced, N={e['n']}: p50 {e['p50']} ms, p90 {e['p90']}, p99 {e['p99']}, "
              f"max {e['max']}, mean {e['mean']} (95% CI {e.get('mean_ci95')}, bootstrap)")
        for k, what in (("veth_created_ms", "veth created"), ("map_entry_ms", "endpoints entry"),
                        ("tc_attached_ms", "TC attached"), ("docker_run_returned_ms", "docker run -d returned")):
            print(f"    {what:24s} p50 {l[k].get('p50')} ms, p90 {l[k].get('p90')} after the start event")
        t = l.get("trend")
        if t:
            print(f"    trend: p50 {t['p50_first_quarter_ms']} ms (first quarter) -> {t['p50_last_quarter_ms']} ms "
                  f"(last), {t['slope_ms_per_running_container']} ms per running container")
    print(f"    poll period mean {p.get('period_mean_us')} us (asked {p.get('interval_us')}), "
          f"agent CPU {l.get('agent_cpu_ms_per_start')} ms per start, lost {l['lost']}, "
          f"problems {len(l['problems'])}, agent log lines {l['agent_log']['lines']}")
    k = l.get("agent_kernel_ms")
    if k:
        print(f"    agent decision -> kernel: p50 {k.get('p50')} ms, p99 {k.get('p99')} ms over {k['n']} syncs")
    a = l.get("agent_apply_ms")
    if a:
        print(f"    agent decision -> kernel and record: p50 {a.get('p50')} ms, p99 {a.get('p99')} ms "
              f"over {a['n']} syncs (the first, which made the instance: {l.get('agent_first_apply_ms')} ms)")
s = r.get("sync")
if s:
    d = s["docker_start"]
    print(f"  docker started {d.get('containers')} containers in {d.get('wall_s')} s "
          f"({d.get('containers_per_s')}/s, {d.get('jobs')} at a time); docker inspect of all: {d.get('inspect_all_wall_s')} s")
    for x in s["rounds"]:
        c, st = x.get("cold", {}), x.get("steady", {})
        print(f"    round {x['round']}: cold sync {c.get('wall_s')} s (user {c.get('user_s')}, sys {c.get('sys_s')}), "
              f"steady {st.get('wall_s')} s (changed: {st.get('changed')})")
    print(f"    mean cold {s['cold_wall_s']['mean']} s, steady {s['steady_wall_s']['mean']} s; "
          f"all enforced and steady unchanged: {s['all_enforced_and_steady_unchanged']}")
PY

if [ -n "$OUT" ]; then
  cp "$W/results.json" "$OUT" && bench_log "results in $OUT"
else
  cat "$W/results.json"
fi
