#!/usr/bin/env bash
# demo-docker.sh [--moat PATH] [--keep] - `moat docker` against a real dockerd.
# Starts a private dockerd (iptables:false) in network namespaces of its own
# (tests/e2e/docker_lib.sh), replays seed 000's invoice app ("Beispiel 2":
# rechnung, sicherheit, datenbank, -p 5000:5000, Compose labels) with the
# docker commands a user would type, and prints who reaches whom three
# times: plain Docker without its iptables, with `moat docker`, and with a
# segmentation policy dropped into the agent's policy directory. Then moat
# explains one allowed and one denied flow and shows the drops it counted.
# Everything is torn down on exit, also on Ctrl-C.
set -uo pipefail
source "$(dirname "$0")/common.sh"

usage() {
  cat <<EOF
usage: $(basename "$0") [--moat PATH] [--keep]

Replays seed 000's invoice app with real docker commands against a private
dockerd (its own network namespaces, nothing on the machine's Docker) and
prints the reachability matrix without moat, with \`moat docker\`, and with a
segmentation policy. Needs root (asks through sudo). Takes 2-3 minutes.

  --moat PATH   the moat binary (default: $MOAT_BIN, built when missing)
  --keep        leave everything running until Enter, with the commands to
                look around (docker CLI, moat, curl from the outside)
  --help        this text
EOF
}

MOAT=""
KEEP=0
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --help|-h) usage; exit 0 ;;
    --moat) [ $# -ge 2 ] || { usage >&2; exit 2; }; MOAT=$2; shift 2 ;;
    --moat=*) MOAT=${1#--moat=}; shift ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
become_root "${args[@]}"
need_root
install_missing || exit 1
if [ -z "$MOAT" ]; then
  MOAT=$MOAT_BIN
  [ -x "$MOAT" ] || build
fi
[ -x "$MOAT" ] || { echo "not executable: $MOAT" >&2; exit 2; }
MOAT=$(readlink -f "$MOAT")
note_bpffs

# docker_lib.sh wants lib.sh's cleanup on its EXIT trap; ours replaces it.
source "$MOAT_ROOT/tests/e2e/docker_lib.sh"
N=$(echo "demo$$" | cut -c1-12)
I="demo$$"
AGENT=""
TMPD=$(mktemp -d /tmp/moat-demo-docker.XXXXXX)
POL=$TMPD/policies
mkdir -p "$POL"
T0=$(date +%s)

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  # Interrupted mid-line (a matrix row): start the report on a line of its own.
  [ "$rc" -ne 0 ] && echo
  if [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; then
    kill -TERM "$AGENT"
    for _ in $(seq 50); do kill -0 "$AGENT" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$AGENT" 2>/dev/null
    wait "$AGENT" 2>/dev/null
  fi
  # What the agent enforced stays pinned after it stops: `moat down` removes it.
  [ -n "${DK_NETNS:-}" ] && [ -e "$DK_NETNS" ] &&
    nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
  docker_down_all
  rm -rf "$TMPD"
  restore_bpffs
  echo "torn down after $(( $(date +%s) - T0 ))s; namespaces left: $(ip netns list | grep -c "moat-dk-$N-" || true)"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# say ARGS...: print a command the way a user would type it (shell-quoted
# only where needed), wrapped with backslashes to stay readable; an option
# stays on one line with its value.
say() {
  local a unit line="$" out="" args=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]] || [ "$a" = "&" ]; then args+=("$a"); else args+=("'${a//\'/\'\\\'\'}'"); fi
  done
  set -- "${args[@]}"
  while [ $# -gt 0 ]; do
    unit=$1; shift
    if [[ $unit == -* ]] && [ $# -gt 0 ] && [[ $1 != -* ]]; then unit+=" $1"; shift; fi
    if [ "$unit" = sh ] && [ $# -ge 2 ] && [ "$1" = -c ]; then unit+=" $1 $2"; shift 2; fi
    if [ $(( ${#line} + ${#unit} + 1 )) -gt 92 ] && [ "$line" != "$" ]; then
      out+="$line \\"$'\n'; line="   "
    fi
    line+=" $unit"
  done
  printf '%s%s\n' "$out" "$line"
}
# docker ARGS...: shown as `docker ...`, run against the private dockerd.
# Shown on fd 3 (the terminal) so that `docker ... >/dev/null` hides only
# docker's own output (container ids).
exec 3>&1
docker() { say docker "$@" >&3; dk "$@"; }
# moat ARGS...: run in dockerd's network namespace (the agent's); say_moat
# shows it.
moat() { nsenter --net="$DK_NETNS" "$MOAT" "$@" --instance "$I"; }
say_moat() { say nsenter --net="$DK_NETNS" moat "$@" --instance "$I"; }

log "a private dockerd (iptables:false, userland-proxy:false) in namespaces of its own"
docker_up "$N" || exit 1
echo "dockerd up in ${DK_UP_SECONDS}s; its host is netns $DK_HOST_NS (uplink 198.18.0.1),"
echo "the world is $DK_OUT_NS (198.18.0.2). Below, \`docker\` means: docker -H unix://$DK_SOCK"
echo

# The seed's images (team-app and friends) are not available here: each
# service is busybox httpd answering its own name on the seed's port, so a
# probe proves which container answered.
serve() { echo "mkdir -p /w && echo $1 >/w/index.html && httpd -p $2 -h /w && exec sleep 100000"; }
PROJECT=rechnung-app
compose() { echo "--label com.docker.compose.project=$PROJECT --label com.docker.compose.service=$1"; }

log "seed 000, Beispiel 2: the invoice app as a Docker user starts it"
docker network create rechnungswesen >/dev/null || exit 1
# shellcheck disable=SC2046
docker run -d --name rechnung --network rechnungswesen -p 5000:5000 $(compose rechnung) \
  "$DK_IMAGE" sh -c "$(serve rechnung 5000)" >/dev/null || exit 1
# shellcheck disable=SC2046
docker run -d --name sicherheit --network rechnungswesen $(compose sicherheit) \
  "$DK_IMAGE" sh -c "$(serve sicherheit 6000)" >/dev/null || exit 1
# shellcheck disable=SC2046
docker run -d --name datenbank --network rechnungswesen $(compose datenbank) \
  "$DK_IMAGE" sh -c "$(serve datenbank 7000)" >/dev/null || exit 1
echo
log "and someone else's container on a second network"
docker network create gastnetz >/dev/null || exit 1
docker run -d --name besucher --network gastnetz "$DK_IMAGE" sh -c "$(serve besucher 8000)" >/dev/null || exit 1
echo

ip_of() { dk inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
gw_of() { dk network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$1"; }
declare -A IP PORT GW
for c in rechnung sicherheit datenbank besucher; do IP[$c]=$(ip_of "$c"); done
PORT=([rechnung]=5000 [sicherheit]=6000 [datenbank]=7000 [besucher]=8000)
GW_R=$(gw_of rechnungswesen); GW_G=$(gw_of gastnetz)
GW=([rechnung]=$GW_R [sicherheit]=$GW_R [datenbank]=$GW_R [besucher]=$GW_G [host]=$GW_R [world]=$GW_R)
UP=198.18.0.1
# Without a route the world could only ever try the published port; a
# neighbour on the uplink can add one, and then only the host's forwarding
# rules stand between it and the containers.
echo "the world's router learns a route to the containers (as a neighbour on the uplink could):"
say ip route add 172.16.0.0/12 via $UP
dk_out ip route add 172.16.0.0/12 via $UP || exit 1
echo

# Probes. Each prints one cell: ok (answered by the expected container),
# -- (no connection: dropped), .. (connected, nobody answers), rf (refused),
# ?? (anything else).
REQ='GET / HTTP/1.0\r\n\r\n'
cprobe() {  # cprobe CONTAINER IP PORT WANT: busybox nc inside the container
  local out
  out=$(dk exec "$1" timeout 2 sh -c "printf '$REQ' | nc -w 1 $2 $3" 2>&1 | tr -d '\r')
  if echo "$out" | grep -qx "$4"; then echo ok
  elif [[ $out == *"timed out"* ]]; then echo --
  elif [[ $out == *refused* ]]; then echo rf
  elif [ -z "$out" ] || [[ $out == *Terminated* ]]; then echo ..
  else echo "??"; fi
}
hprobe() {  # hprobe dk_host|dk_out IP PORT WANT: the machine's curl in that namespace
  local out rc t
  out=$("$1" curl -s --connect-timeout 1 -m 2 -w '\n%{time_connect}' "http://$2:$3/" 2>/dev/null)
  rc=$?
  t=${out##*$'\n'}
  if [ $rc = 0 ] && [ "$(echo "$out" | head -n 1)" = "$4" ]; then echo ok
  elif [ $rc = 7 ]; then echo rf
  elif [ $rc = 28 ] && [[ $t =~ ^0\.0+$ ]]; then echo --
  elif [ $rc = 28 ]; then echo ..
  else echo "??"; fi
}
probe() {  # probe FROM IP PORT WANT
  case $1 in
    host) hprobe dk_host "$2" "$3" "$4" ;;
    world) hprobe dk_out "$2" "$3" "$4" ;;
    *) cprobe "$@" ;;
  esac
}
ROWS=(rechnung sicherheit datenbank besucher host world)
SERVICES=(rechnung sicherheit datenbank besucher)
matrix() {  # matrix TITLE
  local from to cell w=12
  echo "$1"
  printf '  %-12s' "from \\ to"
  for to in "${SERVICES[@]}"; do printf "%-${w}s" "$to"; done
  printf "%-${w}s%-${w}s%-${w}s\n" "127.0.0.1" "gateway" "$UP"
  printf '  %-12s' ""
  for to in "${SERVICES[@]}"; do printf "%-${w}s" ":${PORT[$to]}"; done
  printf "%-${w}s%-${w}s%-${w}s\n" ":5000" ":5000" ":5000"
  for from in "${ROWS[@]}"; do
    printf '  %-12s' "$from"
    for to in "${SERVICES[@]}"; do
      cell=""
      [ "$from" != "$to" ] && cell=$(probe "$from" "${IP[$to]}" "${PORT[$to]}" "$to")
      printf "%-${w}s" "$cell"
    done
    # A container's 127.0.0.1 is its own; the world's is the world's.
    cell=""
    [ "$from" = host ] && cell=$(probe host 127.0.0.1 5000 rechnung)
    printf "%-${w}s" "$cell"
    printf "%-${w}s" "$(probe "$from" "${GW[$from]}" 5000 rechnung)"
    printf "%-${w}s\n" "$(probe "$from" $UP 5000 rechnung)"
  done
  echo
}
legend() {
  cat <<EOF
  ok  answered by the container named in the column    -- no connection (dropped)
  ..  connected, nobody answers (dockerd only holds a published port with iptables:false)
  rf  connection refused    ?? something else    blank: not probed (itself, or a container's own 127.0.0.1)
  containers: ${IP[rechnung]} rechnung, ${IP[sicherheit]} sicherheit, ${IP[datenbank]} datenbank (rechnungswesen),
              ${IP[besucher]} besucher (gastnetz). gateway: the host's address on the prober's
              network ($GW_R rechnungswesen, $GW_G gastnetz; $GW_R for host and world).
  probes: busybox nc -w 1 inside containers, curl --connect-timeout 1 -m 2 from the host and the world.
EOF
  echo
}

log "1/3 plain Docker with iptables:false, no moat"
legend
matrix "Everyone reaches everyone, the world too; the published port 5000 answers nowhere:"

log "2/3 moat docker follows dockerd and enforces Docker's networking with eBPF"
say nsenter --net="$DK_NETNS" moat docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 --policies "$POL" '&'
nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
  --policies "$POL" 2>"$TMPD/agent.log" &
AGENT=$!
endpoints() {
  nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null
}
four() { [ "$(endpoints)" = 4 ]; }
dk_poll 30 four || { echo "the agent did not enforce the 4 containers within 30s:" >&2; cat "$TMPD/agent.log" >&2; exit 1; }
echo "the agent enforces the 4 containers"
echo
matrix "Networks are isolated, the world reaches only the published port, and 5000 answers everywhere:"

log "3/3 segmentation: a Kubernetes NetworkPolicy selecting Compose services by their labels"
# Datenbank and sicherheit accept only rechnung ("Direkte Anfragen an die
# Datenbank sind nicht gewünscht"); rechnung itself stays open.
sel() { echo "{\"matchLabels\": {\"com.docker.compose.project\": \"$PROJECT\", \"com.docker.compose.service\": \"$1\"}}"; }
netpol() {  # netpol NAME TARGET FROM PORT [SEPARATOR]
  cat <<EOF
  {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
   "metadata": {"name": "$1", "namespace": "default"},
   "spec": {"podSelector": $(sel "$2"),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": $(sel "$3")}],
                         "ports": [{"protocol": "TCP", "port": $4}]}]}}${5:-}
EOF
}
{
  echo '{"policies": ['
  netpol datenbank-from-rechnung datenbank rechnung 7000 ,
  netpol sicherheit-from-rechnung sicherheit rechnung 6000
  echo ']}'
} >"$TMPD/invoice.json"
cat "$TMPD/invoice.json"
# The agent rereads the directory when it changes; a rename into it is
# atomic, so the agent never reads half a file.
say mv "$TMPD/invoice.json" "$POL/"
mv "$TMPD/invoice.json" "$POL/"
in_force() { nsenter --net="$DK_NETNS" "$MOAT" policy list --instance "$I" 2>/dev/null | grep -q sicherheit-from-rechnung; }
dk_poll 20 in_force || { echo "the policy was not in force within 20s:" >&2; tail "$TMPD/agent.log" >&2; exit 1; }
echo "the agent loaded it"
echo
matrix "Only rechnung reaches datenbank:7000 and sicherheit:6000; the host no longer sees them:"

log "why: moat explain (the policy model and the loaded kernel maps must agree)"
say_moat explain rechnung datenbank 7000/tcp
moat explain rechnung datenbank 7000/tcp
echo
say_moat explain sicherheit datenbank 7000/tcp
moat explain sicherheit datenbank 7000/tcp
echo

log "what the kernel counted: drops by reason, named by container, network and Compose service"
say_moat stats
moat stats | head -n 20
echo
say_moat flows --verdict dropped
# The count of events shown comes on stderr, the events on stdout.
moat flows --verdict dropped >"$TMPD/flows.out" 2>"$TMPD/flows.err"
cat "$TMPD/flows.err"; echo "(the last 6:)"; tail -n 6 "$TMPD/flows.out"
echo
# `moat flows` drains the ring buffer: one fresh drop for the JSON view,
# where both ends carry their Compose service and project.
docker exec sicherheit nc -w 1 "${IP[datenbank]}" 7000
say_moat flows --verdict dropped --container datenbank --json
moat flows --verdict dropped --container datenbank --json 2>/dev/null | tail -n 1 | python3 -c '
import json, sys
e = json.load(sys.stdin)
keys = ["verdict", "reason", "src", "dst", "isolated_by"]
for k in keys:
    if k in e: print("  %-12s %s" % (k + ":", json.dumps(e[k])))
print("  (also: %s)" % ", ".join(k for k in e if k not in keys))'
echo
if grep -q 'sync failed' "$TMPD/agent.log"; then
  echo "the agent logged failed syncs:"; sed 's/^/  | /' "$TMPD/agent.log" | head -20
fi

if [ "$KEEP" = 1 ]; then
  log "still running: look around, then press Enter to tear it all down"
  cat <<EOF
  alias dk='DOCKER_CONFIG=$DK_DIR/cli $DK_CLI -H unix://$DK_SOCK'
  dk ps; dk exec sicherheit nc -w 1 ${IP[datenbank]} 7000; dk inspect -f '{{json .Config.Labels}}' datenbank
  nsenter --net=$DK_NETNS $MOAT stats --instance $I
  nsenter --net=$DK_NETNS $MOAT flows --follow --instance $I
  nsenter --net=$DK_NETNS $MOAT explain host datenbank 7000/tcp --instance $I
  nsenter --net=$DK_OUT_NETNS curl -s http://$UP:5000/
  the agent's log: $TMPD/agent.log; the policy directory: $POL
EOF
  read -r _ || true
fi
echo "demo ran $(( $(date +%s) - T0 ))s"
