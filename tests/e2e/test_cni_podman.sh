#!/usr/bin/env bash
# Real podman 4.3 (Debian) on its CNI backend, with conflists of the
# reference bridge + moat-cni: podman runs in a network namespace of the
# test's own (its "host", with an uplink to an "outside" namespace) and a
# private mount namespace (tmpfs over /run, /dev/shm, /var/lib/containers
# and /var/lib/cni), with its own store, so nothing of the machine's podman
# or network is touched. Images: `podman import` of a busybox-static rootfs.
#   - isolation between two CNI networks; -p from outside and from the
#     host's localhost (podman's conmon holds the port: portsHeldByRuntime);
#     a NetworkPolicy by label (labels reach the plugin in CNI_ARGS, which
#     podman passes on from its own environment)
#   - no iptables or nft rule in the host namespace
#   - 20 containers started concurrently: every one enforced and in status
#   - `podman rm` of everything leaves no endpoint, pin, record or filter
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"  # dk_build_rootfs_tar, dk_pids_of, dk_wait_gone
for b in podman conmon /usr/lib/cni/bridge /usr/lib/cni/host-local; do
  command -v "$b" >/dev/null || { echo "missing: $b (podman, containernetworking-plugins)"; exit 1; }
done

S=$(echo "pd$$" | cut -c1-8)
INST=pod-$S
HOST=moat-$S-host
OUT=moat-$S-out
D=$TMP/podman
HOLDER=
MADE_DIRS=()
# podman's CNI cache and image blob cache have fixed places; mount points
# for them are made when missing and removed again.
for m in /var/lib/cni /var/lib/containers; do
  [ -d "$m" ] || { mkdir -p "$m" && MADE_DIRS+=("$m"); }
done

P() {  # podman in the test's namespaces, store and configuration
  nsenter -t "$HOLDER" -m -n env CONTAINERS_CONF="$D/containers.conf" \
    CONTAINERS_STORAGE_CONF="$D/storage.conf" CONTAINERS_REGISTRIES_CONF="$D/registries.conf" \
    "$@"
}
pod() { P podman --root "$D/root" --runroot "$D/runroot" --tmpdir "$D/tmp" --cgroup-manager cgroupfs "$@"; }
inhost() { P "$@"; }  # the host namespace, as podman sees it (its /run)
RUN_OPTS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --cgroup-parent "/moat-$S")

teardown() {
  [ -n "$HOLDER" ] && kill -0 "$HOLDER" 2>/dev/null && {
    timeout 60 pod rm -af -t 0 >/dev/null 2>&1
    timeout 30 inhost "$MOAT" down --instance "$INST" >/dev/null 2>&1
  }
  local net="" pids
  [ -e "/run/netns/$HOST" ] && net="net:[$(stat -L -c %i "/run/netns/$HOST")]"
  pids=$(dk_pids_of "$net" "$( [ -n "$HOLDER" ] && readlink "/proc/$HOLDER/ns/mnt")" "moat-$S")
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  # shellcheck disable=SC2086
  [ -n "$pids" ] && dk_wait_gone 10 $pids
  "$MOAT" down --instance "$INST" >/dev/null 2>&1  # pins whose record died with the tmpfs
  ip netns del "$HOST" 2>/dev/null
  ip netns del "$OUT" 2>/dev/null
  find /sys/fs/cgroup -depth -type d -path "*/moat-$S*" -exec rmdir {} + 2>/dev/null
  for m in "${MADE_DIRS[@]}"; do rmdir "$m"; done
}
ON_EXIT+=(teardown)

ip netns add "$HOST" && ip netns add "$OUT" || { bad "namespaces"; finish; }
ip -n "$HOST" link set lo up && ip -n "$OUT" link set lo up &&
  ip -n "$HOST" link add up0 type veth peer name up0 netns "$OUT" &&
  ip -n "$HOST" addr add 192.0.2.1/24 dev up0 && ip -n "$OUT" addr add 192.0.2.2/24 dev up0 &&
  ip -n "$HOST" link set up0 up && ip -n "$OUT" link set up0 up &&
  ip -n "$HOST" route add default via 192.0.2.2 || { bad "uplink"; finish; }

mkdir -p "$D"/{root,runroot,tmp,conf,bin,policies,cni} && chmod 711 "$D"
for p in bridge host-local loopback; do ln -s "/usr/lib/cni/$p" "$D/bin/$p"; done
ln -s "$(readlink -f "$MOAT")" "$D/bin/moat-cni"
cat >"$D/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$D/events.log"
[network]
network_backend = "cni"
network_config_dir = "$D/conf"
cni_plugin_dirs = ["$D/bin"]
default_network = "n1"
EOF
printf '[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n' "$D/runroot" "$D/root" >"$D/storage.conf"
echo 'unqualified-search-registries = []' >"$D/registries.conf"
for n in 1 2; do
  cat >"$D/conf/n$n.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "n$n", "plugins": [
  {"type": "bridge", "bridge": "br-$S-$n", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.92.$n.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "moat-cni", "instance": "$INST", "uplinks": ["up0"], "policyDir": "$D/policies",
   "portsHeldByRuntime": true, "capabilities": {"portMappings": true}}]}
EOF
done
cat >"$D/policies/db.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 80, protocol: TCP}]
EOF

# The holder: a process in the host namespace and a private mount namespace
# that podman and moat-cni run in (nsenter -t), gone with it.
cat >"$D/holder.sh" <<EOF
set -e
mount -t tmpfs -o mode=755 moat-pd-run /run
mkdir -p /run/netns /run/lock
mount -t tmpfs moat-pd-shm /dev/shm
mount -t tmpfs moat-pd-cni /var/lib/cni
mount -t tmpfs moat-pd-ctr /var/lib/containers
exec sleep 100000
EOF
nsenter --net="/run/netns/$HOST" unshare --mount --propagation private sh "$D/holder.sh" \
  </dev/null >"$D/holder.log" 2>&1 &
HOLDER=$!
for i in $(seq 50); do
  [ "$(readlink /proc/$HOLDER/exe 2>/dev/null)" = "$(readlink -f "$(command -v sleep)")" ] && break
  sleep 0.1
done
check "podman's sandbox: a private mount namespace in $HOST" \
  test "$(readlink /proc/$HOLDER/ns/mnt)" != "$(readlink /proc/self/ns/mnt)"

dk_build_rootfs_tar "$D/rootfs" "$D/rootfs.tar" >/dev/null &&
  pod import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$D/rootfs.tar" localhost/moatbox \
    >/dev/null 2>"$D/import.err" || { cat "$D/import.err"; bad "podman import"; finish; }
rm -rf "$D/rootfs" "$D/rootfs.tar"
check "podman uses the CNI backend" bash -c '[ "$1" = cni ]' - "$(pod info --format '{{.Host.NetworkBackend}}' 2>/dev/null)"

run() {  # run NAME NET [CNI_ARGS [podman args...]]: a container serving its name on :80
  local name=$1 net=$2 args=${3:-}
  shift 3 2>/dev/null || shift $#
  P env ${args:+CNI_ARGS=$args} podman --root "$D/root" --runroot "$D/runroot" --tmpdir "$D/tmp" \
    --cgroup-manager cgroupfs run -d --name "$name" --network "$net" "${RUN_OPTS[@]}" "$@" \
    localhost/moatbox sh -c "echo $name >/var/www/index.html; exec httpd -f -p 80 -h /var/www" \
    >/dev/null 2>>"$D/run.err"
}
cpid() { pod inspect -f '{{.State.Pid}}' "$1" 2>/dev/null; }
cip() { pod inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1" 2>/dev/null; }
fetch() {  # fetch FROM URL: the body, FROM a container or "host"/"outside"
  local ns
  case $1 in
    host) ns=/run/netns/$HOST ;;
    outside) ns=/run/netns/$OUT ;;
    *) ns=/proc/$(cpid "$1")/ns/net ;;
  esac
  nsenter --net="$ns" timeout 4 wget -qO- -T 2 -t 1 "$2" 2>/dev/null
}
gets() {  # gets FROM URL EXPECTED: bounded retries
  local i
  for i in 1 2 3; do [ "$(fetch "$1" "$2")" = "$3" ] && return 0; sleep 0.2; done
  return 1
}
refused() { [ "$(fetch "$1" "$2")" != "$3" ]; }
waits_http() {  # waits_http NAME: its httpd listens
  local i p
  p=$(cpid "$1") || return 1
  for i in $(seq 100); do
    [ -n "$(nsenter --net="/proc/$p/ns/net" ss -H -l -n -t 'sport = :80' 2>/dev/null)" ] && return 0
    sleep 0.05
  done
  return 1
}
status_names() { inhost "$MOAT" status --instance "$INST" --json 2>/dev/null |
  python3 -c 'import json,sys; print("\n".join(sorted(e.get("container","") for e in json.load(sys.stdin)["endpoints"])))'; }
in_status() {
  local n names
  names=$(status_names) || return 1
  for n in "$@"; do grep -qx "$n" <<<"$names" || { echo "    $n is not in moat status"; return 1; }; done
}

echo "== containers on two CNI networks"
check "podman run web (n1, -p 8080:80)" run web n1 "" -p 8080:80
check "podman run api (n1, CNI_ARGS app=api)" run api n1 "app=api"
check "podman run db (n1, CNI_ARGS app=db)" run db n1 "app=db"
check "podman run stranger (n1)" run stranger n1
check "podman run far (n2, CNI_ARGS app=api)" run far n2 "app=api"
[ -s "$D/run.err" ] && grep -v 'level=warning' "$D/run.err" | head -5 | sed 's/^/    /'
for c in web api db stranger far; do waits_http "$c" || bad "httpd of $c does not listen"; done
check "moat status lists all five, named as podman names them" in_status web api db stranger far
WEB=$(cip web n1) DB=$(cip db n1) FAR=$(cip far n2)
check "api -> web:80 (same network)" gets api "http://$WEB/" web
check "api -> db:80 (the NetworkPolicy admits app=api)" gets api "http://$DB/" db
check "stranger -> db:80 is dropped (no app=api label)" refused stranger "http://$DB/" db
check "stranger -> web:80 (no policy selects web)" gets stranger "http://$WEB/" web
check "the host forwards (bridge's isGateway): without moat, far would reach web" \
  bash -c '[ "$(ip netns exec "$1" sysctl -n net.ipv4.ip_forward)" = 1 ]' - "$HOST"
check "far -> web:80 is dropped (another CNI network)" refused far "http://$WEB/" web
check "far -> db:80 is dropped, though far has app=api (another network)" refused far "http://$DB/" db
check "web -> far:80 is dropped (the other way)" refused web "http://$FAR/" far
check "outside -> 192.0.2.1:8080 (-p 8080:80, from outside)" gets outside "http://192.0.2.1:8080/" web
check "host -> 127.0.0.1:8080 (from the host's localhost)" gets host "http://127.0.0.1:8080/" web
check "conmon holds 8080 in the host namespace (why portsHeldByRuntime)" \
  bash -c '[ -n "$(ss -N "$1" -H -l -n -t "sport = :8080")" ]' - "$HOST"
no_rules() {
  [ $(( $(nsenter --net="/run/netns/$HOST" iptables-save 2>/dev/null | grep -c '^-A') +
        $(nsenter --net="/run/netns/$HOST" nft list ruleset 2>/dev/null | grep -c chain) )) -eq 0 ]
}
check "no iptables or nft rule in the host namespace" no_rules

echo "== 20 containers started at once"
pids=()
for i in $(seq 20); do run "p$i" n1 & pids+=($!); done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
check "all 20 podman runs succeeded" test "$fails" -eq 0
[ "$fails" -eq 0 ] || grep -v 'level=warning' "$D/run.err" | tail -5 | sed 's/^/    /'
names=()
for i in $(seq 20); do names+=("p$i"); done
check "all 20 are in moat status (25 endpoints)" in_status "${names[@]}"
count_is() { [ "$(status_names | grep -c .)" = "$1" ]; }
check "moat status has exactly 25 endpoints" count_is 25
unenforced=0
for i in $(seq 20); do
  waits_http "p$i" && refused "p$i" "http://$DB/" db || unenforced=$((unenforced + 1))
done
check "every one of them is enforced: its request to db is dropped ($unenforced not)" test "$unenforced" -eq 0
check "p20 -> web:80 passes (icc on n1)" gets p20 "http://$WEB/" web

echo "== podman rm"
rm_one() { pod rm -f -t 0 "$1" >/dev/null 2>&1; }
check "podman rm -f far" rm_one far
not_listed() { ! in_status "$1" >/dev/null; }
check "far is no longer in moat status" not_listed far
check "web still answers from outside" gets outside "http://192.0.2.1:8080/" web
rm_all() { pod rm -af -t 0 >/dev/null 2>&1 && [ -z "$(pod ps -aq 2>/dev/null)" ]; }
gone() { [ ! -e "/sys/fs/bpf/moat/$INST" ] && ! inhost test -e "/run/moat/$INST"; }
no_instance() { ! inhost "$MOAT" status --instance "$INST" >/dev/null 2>&1; }
check "podman rm -f of the other 24" rm_all
check "no pin or record of the instance is left" gone
left=$(nsenter --net="/run/netns/$HOST" tc filter show dev up0 ingress 2>/dev/null | grep -c bpf)
check "no filter left on the uplink ($left)" test "$left" -eq 0
check "moat status: no such instance (no endpoint left)" no_instance
finish
