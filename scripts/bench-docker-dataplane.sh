#!/usr/bin/env bash
# bench-docker-dataplane.sh - moat against the real Docker dataplane: a
# private dockerd with iptables and its userland proxy (Debian's defaults)
# against the same dockerd with iptables off and `moat docker` enforcing,
# plus the same dockerd with nothing (the floor). Same containers and
# published ports, made with the docker CLI. Every dockerd runs in
# namespaces of its own (tests/e2e/docker_lib.sh); nothing of the machine's
# network or Docker is touched. bench/docker_contender.py says what is
# measured and how. Not a test: it fails only when it cannot measure or a
# contender does not enforce what it should.
#
#   scripts/bench-docker-dataplane.sh            3 rounds of 5 s per figure
#   scripts/bench-docker-dataplane.sh --quick    1 round of 1 s: checks that it works
#   --rounds R        rounds (each contender once per round, order rotated)
#   --seconds S       seconds per figure
#   --contenders LIST comma-separated, from docker-iptables,moat-docker,docker-none
#   --moat PATH       the moat binary (default: $MOAT, else $MOAT_BUILD/userspace/moat)
#   --build           build first (scripts/common.sh)
#   --out DIR         results there (default bench/results):
#                     <date>-<host>-docker-dataplane.{json,md}
#   --keep-work       keep the work directory (agent and dockerd logs)
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"

ROUNDS=3 SECS=5 MODE=full OUT="$MOAT_ROOT/bench/results" KEEP=0 DO_BUILD=0
CONTENDERS=docker-iptables,moat-docker,docker-none
MOAT=${MOAT:-$MOAT_BIN}
while [ $# -gt 0 ]; do
  case $1 in
    --quick) MODE=quick ROUNDS=1 SECS=1 ;;
    --rounds) ROUNDS=${2:?}; shift ;;
    --seconds) SECS=${2:?}; shift ;;
    --contenders) CONTENDERS=${2:?}; shift ;;
    --moat) MOAT=${2:?}; shift ;;
    --build) DO_BUILD=1 ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --keep-work) KEEP=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-docker-dataplane.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in ROUNDS SECS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench-docker-dataplane.sh: $v must be a number >= 1" >&2; exit 2; }
done
IFS=, read -r -a WANT <<<"$CONTENDERS"
for c in "${WANT[@]}"; do
  case $c in docker-iptables|moat-docker|docker-none) ;;
    *) echo "bench-docker-dataplane.sh: unknown contender $c" >&2; exit 2 ;; esac
done

need_root
note_bpffs
if [ "$DO_BUILD" = 1 ]; then install_missing && build; MOAT=$MOAT_BIN; fi
need_moat=0
[[ ",$CONTENDERS," == *,moat-docker,* ]] && need_moat=1
[ "$need_moat" = 0 ] || [ -x "$MOAT" ] ||
  { echo "bench-docker-dataplane.sh: no moat binary at $MOAT (--moat PATH, or --build)" >&2; exit 2; }
for t in wrk iperf3 nginx curl taskset nsenter; do
  command -v "$t" >/dev/null || { echo "bench-docker-dataplane.sh: $t is missing" >&2; exit 2; }
done

bench_log() { printf 'bench-docker-dataplane: %s\n' "$*" >&2; }
die() { bench_log "error: $*"; exit 1; }

# docker_lib.sh's EXIT trap calls lib.sh's `cleanup`; lib.sh is not sourced
# (it wants the test calling conventions).
cleanup() { :; }
source "$MOAT_ROOT/tests/e2e/docker_lib.sh"

W=$(mktemp -d /tmp/moat-bench-dkdp.XXXXXX)
chmod 755 "$W"  # the containers read $W/conf
AGENT="" AGENT_INSTANCE="" AGENT_NETNS="" DRIVER=""
SERVER_CPU=$(( $(nproc) >= 2 ? 1 : 0 ))

stop_pid() {  # stop_pid PID: TERM, then KILL after 10 s; only our own children
  local p=$1 i
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
teardown() {
  trap - EXIT INT TERM HUP PIPE
  if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
    kill -TERM -- "-$DRIVER" 2>/dev/null
    stop_pid "$DRIVER"
    kill -KILL -- "-$DRIVER" 2>/dev/null
  fi
  stop_pid "$AGENT"; AGENT=""
  if [ -n "$AGENT_INSTANCE" ] && [ -e "$AGENT_NETNS" ]; then
    nsenter --net="$AGENT_NETNS" "$MOAT" down --instance "$AGENT_INSTANCE" >/dev/null 2>&1
  fi
  docker_down_all
  if [ "$KEEP" = 1 ]; then bench_log "work directory kept: $W"; else rm -rf "$W"; fi
  restore_bpffs
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
trap 'exec >/dev/null 2>&1; exit 141' PIPE

# ---- what the containers run ------------------------------------------------------
# busybox has no nginx, iperf3, wrk or curl: the machine's, from a read-only
# bind mount of /usr at /host/usr, started by their own loader with the
# machine's library directories (all under /usr on a merged-/usr Debian).
mkdir -p "$W/conf"
loader=$(realpath "$(ldd /usr/bin/iperf3 | awk '/ld-linux/ {print $1}')")
libdirs=$(for b in nginx iperf3 wrk curl; do ldd "$(command -v "$b")"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | xargs -r realpath | xargs -r -n1 dirname | sort -u)
for p in "$loader" $libdirs; do
  [[ $p == /usr/* ]] || die "$p is outside /usr: the containers see only /usr (merged /usr expected)"
done
cat >"$W/conf/run.sh" <<EOF
# run.sh BINARY ARGS...: a binary of the machine, in the container
exec /host$loader --library-path $(echo $libdirs | sed 's|^|/host|; s| |:/host|g') "\$@"
EOF
cat >"$W/conf/nginx.conf" <<'EOF'
user root;
daemon off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log /tmp/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path /tmp/nb; proxy_temp_path /tmp/np; fastcgi_temp_path /tmp/nf;
  uwsgi_temp_path /tmp/nu; scgi_temp_path /tmp/ns;
  keepalive_requests 1000000;
  server { listen 80 reuseport backlog=4096; listen 81 reuseport backlog=4096;
           location / { return 200 "ok\n"; } }
}
EOF
cat >"$W/conf/serve.sh" <<'EOF'
sh /conf/run.sh /host/usr/bin/iperf3 -s -p 5201 >/tmp/iperf3.log 2>&1 &
exec sh /conf/run.sh /host/usr/sbin/nginx -p /tmp/ -c /conf/nginx.conf -e /tmp/nginx-error.log
EOF

# ---- the instances ------------------------------------------------------------------
srv_listens() {  # every server port of srv listens
  local out
  out=$(dk_cexec srv ss -Hltn) || return 1
  for p in 80 81 5201; do grep -qE "[:.]$p\s" <<<"$out" || return 1; done
}
agent_enforces() {  # agent_enforces N: the agent's instance has N endpoints
  [ "$(nsenter --net="$DK_NETNS" "$MOAT" status --instance "$AGENT_INSTANCE" --json 2>/dev/null |
       python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null)" = "$1" ]
}

ENV_ITEMS=()
setup_instance() {  # setup_instance CONTENDER NAME
  local c=$1 n=$2 mounts
  if [ "$c" = docker-iptables ]; then DK_IPTABLES=true DK_USERLAND_PROXY=true
  else DK_IPTABLES=false DK_USERLAND_PROXY=false; fi
  bench_log "$c: private dockerd $n (iptables $DK_IPTABLES, userland-proxy $DK_USERLAND_PROXY)"
  docker_up "$n" || die "docker_up $n failed"
  # A neighbour that routes to the containers' addresses: without it the
  # "container address from outside" checks could not fail, and docker-none
  # would have no path at all.
  ip -n "$DK_OUT_NS" route add 172.16.0.0/12 via "$DK_UPLINK_HOST_IP" || die "route in $DK_OUT_NS"
  dk network create bn1 >/dev/null && dk network create bn2 >/dev/null || die "network create ($c)"
  mounts=(-v /usr:/host/usr:ro -v "$W/conf:/conf:ro" --log-driver none)
  dk run -d --name srv --network bn1 -p 8080:80 -p 5201:5201 --cpuset-cpus "$SERVER_CPU" "${mounts[@]}" \
    "$DK_IMAGE" sh /conf/serve.sh >/dev/null || die "docker run srv ($c)"
  dk run -d --name cli --network bn1 --cpuset-cpus 0 "${mounts[@]}" "$DK_IMAGE" sleep 1000000 >/dev/null &&
  dk run -d --name oth --network bn2 "${mounts[@]}" "$DK_IMAGE" sleep 1000000 >/dev/null ||
    die "docker run cli/oth ($c)"
  dk_poll 30 srv_listens || die "srv does not listen on 80, 81 and 5201 ($c): $(dk logs srv 2>&1 | tail -3)"
  if [ "$c" = moat-docker ]; then
    AGENT_INSTANCE=$n AGENT_NETNS=$DK_NETNS
    nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$n" --uplink "$DK_UPLINK" \
      2>>"$W/agent.log" &
    AGENT=$!
    dk_poll 60 agent_enforces 3 || die "moat docker does not enforce the 3 containers: $(tail -5 "$W/agent.log")"
  fi
  ENV_ITEMS+=("$(python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    contender "$c" name "$n" dir "$DK_DIR" sock "$DK_SOCK" cli "$DK_CLI" host_netns "$DK_NETNS" \
    out_netns "$DK_OUT_NETNS" daemon "iptables=$DK_IPTABLES userland-proxy=$DK_USERLAND_PROXY")")
}

T0=$EPOCHREALTIME
for c in "${WANT[@]}"; do
  case $c in docker-iptables) n=dbi$$ ;; moat-docker) n=dbm$$ ;; docker-none) n=dbn$$ ;; esac
  setup_instance "$c" "$n"
done
bench_log "set up in $(python3 -c "print(round($EPOCHREALTIME - $T0, 1))") s"

commit=$(git -C "$MOAT_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
[ -n "$(git -C "$MOAT_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && dirty=true
python3 - "$W/env.json" "$commit" "$dirty" "$(dk version -f '{{.Server.Version}}' 2>/dev/null)" \
  "$SERVER_CPU" "${ENV_ITEMS[@]}" <<'PY' || die "env file"
import json, sys
out, commit, dirty, docker, cpu = sys.argv[1:6]
json.dump({"moat_commit": commit, "moat_tree_dirty": dirty == "true", "docker": docker, "server_cpu": cpu,
           "instances": [json.loads(x) for x in sys.argv[6:]]}, open(out, "w"), indent=1)
PY

# A process group of its own, waited for in the background: a signal runs the
# teardown at once (not after the measurement), which ends the group, its
# clients (wrk, iperf3, curl under nsenter) included.
setsid python3 "$MOAT_ROOT/bench/docker_contender.py" --env "$W/env.json" --rounds "$ROUNDS" \
  --seconds "$SECS" --mode "$MODE" --out "$OUT" &
DRIVER=$!
wait "$DRIVER"
rc=$?
DRIVER=""
[ -s "$W/agent.log" ] && grep -iE 'error|fail' "$W/agent.log" | head -5 | sed 's/^/agent: /' >&2
exit $rc
