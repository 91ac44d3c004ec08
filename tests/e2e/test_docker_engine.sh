#!/usr/bin/env bash
# docker/engine.h and dataplane/veth.h against a real dockerd (docker_lib.sh):
# the DockerEngineLive* unit tests, which skip without MOAT_DOCKER_SOCK, run
# here with it set, inside dockerd's network namespace (host_veth names the
# peer there) and mount namespace (SandboxKey paths are netns bind mounts
# only there). API 1.41 is negotiated, a 404 is a clear error, host_veth
# finds what dk_host_veth finds and leaves the caller's netns alone, and the
# event stream delivers start, die, destroy and stops when asked.
# $1 is the moat binary; the unit tests are built next to it.
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"
N=$(echo "dke$$" | cut -c1-12)
UNIT=$(dirname "$MOAT")/../tests/moat_unit_tests
[ -x "$UNIT" ] || { bad "no unit test binary at $UNIT"; finish; }

if docker_up "$N"; then
  ok "docker_up: dockerd API $(dk version -f '{{.Server.APIVersion}}') at $DK_SOCK (${DK_UP_SECONDS}s)"
else
  bad "docker_up $N"
  finish
fi

NET=mnet
dk network create "$NET" >/dev/null
dk run -d --name c1 --network "$NET" "$DK_IMAGE" sleep 1000 >/dev/null
dk run -d --name c2 --network "$NET" "$DK_IMAGE" sleep 1000 >/dev/null
check "network $NET and containers c1, c2 run" test "$(dk ps -q | wc -l)" -eq 2

# What the live tests compare against, from the CLI and `ip` (dk_host_veth).
LIVE_ENV=(MOAT_DOCKER_SOCK="$DK_SOCK" MOAT_DK_API=1.41 MOAT_DK_NET="$NET")
for c in c1 c2; do
  C=${c^^}
  LIVE_ENV+=(
    "MOAT_DK_$C=$(dk inspect -f '{{.Id}}' "$c")"
    "MOAT_DK_${C}_PID=$(dk_pid "$c")"
    "MOAT_DK_${C}_MAC=$(dk inspect -f "{{(index .NetworkSettings.Networks \"$NET\").MacAddress}}" "$c")"
    "MOAT_DK_${C}_SANDBOX=$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' "$c")"
    "MOAT_DK_${C}_VETH=$(dk_host_veth "$c")"
  )
done
printf '    %s\n' "${LIVE_ENV[@]}"
EV=ev$$
LIVE_ENV+=(
  MOAT_DK_EVENT_NAME=$EV
  "MOAT_DK_EVENT_CMD=DOCKER_CONFIG=$DK_DIR/cli $DK_CLI -H unix://$DK_SOCK run -d --name $EV --network $NET $DK_IMAGE sleep 1000 >/dev/null && DOCKER_CONFIG=$DK_DIR/cli $DK_CLI -H unix://$DK_SOCK rm -f $EV >/dev/null"
)

# live_tests FILTER COUNT: the tests ran in dockerd's namespaces, COUNT passed, none skipped.
live_tests() {
  local out
  out=$(dk_ns env "${LIVE_ENV[@]}" "$UNIT" --gtest_filter="$1" 2>&1)
  local rc=$?
  if [ $rc -eq 0 ] && grep -q "^\[  PASSED  \] $2 test" <<<"$out" && ! grep -q "SKIPPED" <<<"$out"; then
    return 0
  fi
  sed 's/^/      /' <<<"$out" | tail -40
  return 1
}

NS_BEFORE=$(readlink /proc/self/ns/net)
check "DockerEngineLive.*: 1.41 negotiated, lists, inspect, 404, host_veth = dk_host_veth, netns kept" \
  live_tests 'DockerEngineLive.*' 3
check "DockerEngineLiveEvents.*: start, die, destroy of $EV in order; stop within 1 s while idle" \
  live_tests 'DockerEngineLiveEvents.*' 1
# From the machine's network namespace (only reading its links): the peer
# ifindex names nothing there, or something else, and host_veth says so.
wrong_netns() {
  local out
  out=$(nsenter --mount="/proc/$DK_PID/ns/mnt" env "${LIVE_ENV[@]}" "$UNIT" \
          --gtest_filter='DockerEngineLive.HostVeth*' 2>&1) && return 1
  grep -q "run in dockerd's" <<<"$out" || { sed 's/^/      /' <<<"$out" | tail -20; return 1; }
}
check "host_veth outside dockerd's netns: a clear error, not a wrong name" wrong_netns
check "the script's own network namespace is unchanged" test "$(readlink /proc/self/ns/net)" = "$NS_BEFORE"
check "the event test's container is gone" test -z "$(dk ps -aq -f name="$EV")"

D=$DK_DIR
docker_down "$N"
check "docker_down leaves nothing behind" test -z "$(dk_residue "$N" "$D")"
finish
