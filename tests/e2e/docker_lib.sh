# docker_lib.sh - sourced by e2e tests after lib.sh: a private, real dockerd
# (Debian's docker.io 20.10 with a containerd of its own) in network
# namespaces of the test's own, for tests of `moat docker`.
#
#   docker_up NAME     namespaces, containerd, dockerd, image moatbox:latest
#   dk ARGS...         the docker CLI against that daemon
#   docker_down NAME   every process, mount, cgroup, namespace and file gone
#
# Layout (see DOCKER_FACTS.md for why):
#   moat-dk-NAME-host  dockerd's network namespace ("the host"): lo, the
#                      uplink uplink0 198.18.0.1/24, default route via
#                      198.18.0.2, and whatever dockerd creates (docker0, br-*)
#   moat-dk-NAME-out   "the world": uplink0 198.18.0.2/24 and 198.19.0.1/32
#   a private mount namespace (unshare --mount --propagation private) shared
#   by containerd and dockerd, with fresh tmpfs on /run and /etc/docker: their
#   mounts (overlayfs, netns bind mounts, shm) never show in the machine's
#   mount table, the shims' sockets (/run/containerd/s) and key.json
#   (/etc/docker) land in tmpfs, and a containerd or dockerd of the machine
#   (/run/containerd/containerd.sock, /run/docker.sock) is invisible.
#   DK_DIR (mktemp under /tmp): data-root, exec-root, containerd's roots,
#   the API socket DK_SOCK, logs. Reachable from the root mount namespace.
#   cgroup parent /moat-dk-NAME in every cgroup hierarchy (cgroupfs driver).
#
# Nothing is done in the root network namespace, and nothing of the machine's
# own Docker (/var/run/docker.sock, /var/lib/docker) is touched.
#
# Variables set by docker_up (for the instance started last):
#   DK_NAME DK_DIR DK_SOCK DK_HOST_NS DK_OUT_NS DK_NETNS DK_OUT_NETNS
#   DK_PID (dockerd) DK_CTD_PID (containerd) DK_MNTNS (mnt:[inode])
#   DK_CGROUP DK_UP_SECONDS
# docker_down NAME works from a state file in DK_DIR, so several instances
# can be up at once; every instance still up is taken down on exit.

DK_DOCKERD=${DK_DOCKERD:-$(command -v dockerd || echo /usr/sbin/dockerd)}
DK_CONTAINERD=${DK_CONTAINERD:-$(command -v containerd || echo /usr/bin/containerd)}
# The CLI of the docker.io package matches the daemon; any newer CLI works
# too (it negotiates API 1.41).
DK_CLI=${DK_CLI:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker)}
DK_IMAGE=moatbox:latest
DK_UPLINK=uplink0
DK_UPLINK_HOST_IP=198.18.0.1
DK_UPLINK_OUT_IP=198.18.0.2
DK_WORLD_IP=198.19.0.1
DK_UP_TIMEOUT=${DK_UP_TIMEOUT:-90}  # seconds for containerd + dockerd to answer
# Read by each docker_up: the tests run dockerd without its own dataplane
# (moat's job); a benchmark sets both to true for Docker's own (iptables and
# docker-proxy) as the contender.
DK_IPTABLES=${DK_IPTABLES:-false}
DK_USERLAND_PROXY=${DK_USERLAND_PROXY:-false}
declare -A DK_DIR_OF=()

dk_log() { echo "    [docker] $*" >&2; }

dk() {  # dk ARGS...: the docker CLI against the current private dockerd
  DOCKER_CONFIG=$DK_DIR/cli "$DK_CLI" -H "unix://$DK_SOCK" "$@"
}

dk_host() { nsenter --net="$DK_NETNS" "$@"; }     # CMD in dockerd's network namespace
dk_out() { nsenter --net="$DK_OUT_NETNS" "$@"; }  # CMD in the outside namespace
# CMD in dockerd's mount and network namespaces: SandboxKey paths
# ($DK_DIR/exec/netns/ID) are bind mounts there only.
dk_ns() { nsenter --mount="/proc/$DK_PID/ns/mnt" --net="$DK_NETNS" "$@"; }

dk_pid() { dk inspect -f '{{.State.Pid}}' "$1"; }  # dk_pid CONTAINER
# dk_cexec CONTAINER CMD...: CMD (the machine's binary) in the container's netns
dk_cexec() { local p; p=$(dk_pid "$1") || return 1; shift; nsenter --net="/proc/$p/ns/net" "$@"; }

# dk_host_veth CONTAINER [IFNAME]: the name, in dockerd's network namespace,
# of the host-side veth of the container's IFNAME (eth0). iflink of eth0
# (link_index of `ip -j link`, read inside the container's netns) is the
# peer's ifindex in the host netns.
dk_host_veth() {
  local c=$1 ifname=${2:-eth0} idx
  idx=$(dk_cexec "$c" ip -j link show "$ifname" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["link_index"])') || return 1
  dk_host ip -j link show | python3 -c '
import json,sys
m=[l["ifname"] for l in json.load(sys.stdin) if l["ifindex"]==int(sys.argv[1])]
print(m[0]) if m else sys.exit(1)' "$idx"
}

# dk_bridge_of NETWORK: the Linux bridge of a bridge network
# (com.docker.network.bridge.name, else br-<first 12 hex of the network id>).
dk_bridge_of() {
  local name id
  name=$(dk network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$1") || return 1
  if [ -z "$name" ]; then
    id=$(dk network inspect -f '{{.Id}}' "$1") || return 1
    name=br-${id:0:12}
  fi
  echo "$name"
}

dk_now() { date +%s.%N; }
dk_secs() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }

# dk_poll SECONDS CMD...: until CMD succeeds, every 0.1 s, at most SECONDS.
dk_poll() {
  local secs=$1 i
  shift
  for i in $(seq $(( secs * 10 ))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

dk_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# A busybox-static rootfs: /bin/busybox and a symlink per applet.
dk_build_rootfs_tar() {  # dk_build_rootfs_tar DIR TARFILE
  local r=$1 a bb
  bb=/bin/busybox  # busybox-static's: no library needed in the image
  [ -x "$bb" ] || bb=$(command -v busybox) || { dk_log "busybox (busybox-static) is missing"; return 1; }
  case $(ldd "$bb" 2>&1) in
    *"not a dynamic"*) ;;
    *) dk_log "$bb is not static (busybox-static)"; return 1 ;;
  esac
  mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,var/www,usr} || return 1
  chmod 1777 "$r/tmp"
  cp "$bb" "$r/bin/busybox" || return 1
  for a in $("$r/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
  done
  ln -s bin "$r/sbin"
  ln -s ../bin "$r/usr/bin"
  ln -s ../bin "$r/usr/sbin"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
  echo 'root:x:0:' >"$r/etc/group"
  echo moatbox >"$r/var/www/index.html"
  tar -C "$r" -cf "$2" .
}

docker_up() {  # docker_up NAME
  local name=$1 d t0 t1 i
  [ -n "$name" ] || { dk_log "docker_up NAME"; return 1; }
  for i in "$DK_IPTABLES" "$DK_USERLAND_PROXY"; do
    [ "$i" = true ] || [ "$i" = false ] || { dk_log "DK_IPTABLES, DK_USERLAND_PROXY: true or false"; return 1; }
  done
  for i in "$DK_DOCKERD" "$DK_CONTAINERD" "$DK_CLI"; do
    [ -x "$i" ] || { dk_log "missing: $i (docker.io, containerd)"; return 1; }
  done
  # dockerd writes /etc/docker/key.json (no option moves it): a tmpfs covers
  # /etc/docker in the private mount namespace, which needs the directory.
  [ -d /etc/docker ] || { dk_log "/etc/docker is missing (made by the docker.io package)"; return 1; }
  t0=$(dk_now)
  d=$(mktemp -d /tmp/moat-dk.XXXXXX) || return 1
  DK_NAME=$name
  DK_DIR=$d
  DK_DIR_OF[$name]=$d
  DK_SOCK=$d/docker.sock
  DK_HOST_NS=moat-dk-$name-host
  DK_OUT_NS=moat-dk-$name-out
  DK_NETNS=/run/netns/$DK_HOST_NS
  DK_OUT_NETNS=/run/netns/$DK_OUT_NS
  DK_CGROUP=moat-dk-$name
  DK_PID=
  DK_CTD_PID=
  DK_MNTNS=
  mkdir -p "$d"/{data,exec,cli,ctd} && chmod 711 "$d"
  dk_save_state

  # Namespaces and the uplink, made inside them: the root namespace never
  # sees the veth.
  ip netns add "$DK_HOST_NS" && ip netns add "$DK_OUT_NS" || { dk_log "ip netns add failed"; return 1; }
  ip -n "$DK_HOST_NS" link set lo up &&
  ip -n "$DK_OUT_NS" link set lo up &&
  ip -n "$DK_HOST_NS" link add "$DK_UPLINK" type veth peer name "$DK_UPLINK" netns "$DK_OUT_NS" &&
  ip -n "$DK_HOST_NS" addr add "$DK_UPLINK_HOST_IP/24" dev "$DK_UPLINK" &&
  ip -n "$DK_OUT_NS" addr add "$DK_UPLINK_OUT_IP/24" dev "$DK_UPLINK" &&
  ip -n "$DK_OUT_NS" addr add "$DK_WORLD_IP/32" dev lo &&
  ip -n "$DK_HOST_NS" link set "$DK_UPLINK" up &&
  ip -n "$DK_OUT_NS" link set "$DK_UPLINK" up &&
  ip -n "$DK_HOST_NS" route add default via "$DK_UPLINK_OUT_IP" || { dk_log "uplink setup failed"; return 1; }

  cat >"$d/ctd/config.toml" <<EOF
version = 2
root = "$d/ctd/root"
state = "$d/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/ctd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/ctd/opt"
EOF
  cat >"$d/daemon.json" <<EOF
{
  "data-root": "$d/data",
  "exec-root": "$d/exec",
  "pidfile": "$d/dockerd.pid",
  "hosts": ["unix://$DK_SOCK"],
  "containerd": "$d/ctd/containerd.sock",
  "iptables": $DK_IPTABLES,
  "ip6tables": false,
  "userland-proxy": $DK_USERLAND_PROXY,
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/$DK_CGROUP",
  "shutdown-timeout": 5,
  "log-level": "info"
}
EOF
  # One shell per instance: private mounts, containerd in the background
  # (waited for), then exec dockerd (same pid). Both pids go to files.
  cat >"$d/launch.sh" <<EOF
set -e
# Without these, dockerd writes /etc/docker/key.json and /run/docker/plugins
# and the shims /run/containerd/s on the machine (DOCKER_FACTS.md).
mount -t tmpfs -o mode=755 moat-dk-run /run
mount -t tmpfs -o mode=755 moat-dk-etc /etc/docker
echo \$\$ >"$d/launch.pid"
"$DK_CONTAINERD" --config "$d/ctd/config.toml" >"$d/containerd.log" 2>&1 </dev/null &
echo \$! >"$d/containerd.pid"
i=0
while [ ! -S "$d/ctd/containerd.sock" ]; do
  i=\$((i + 1)); [ \$i -le $(( DK_UP_TIMEOUT * 10 )) ] || { echo "containerd did not start" >&2; exit 1; }
  kill -0 \$! 2>/dev/null || { echo "containerd exited" >&2; exit 1; }
  sleep 0.1
done
exec "$DK_DOCKERD" --config-file "$d/daemon.json" >"$d/dockerd.log" 2>&1
EOF
  nsenter --net="$DK_NETNS" unshare --mount --propagation private sh "$d/launch.sh" \
    </dev/null >"$d/launch.log" 2>&1 &
  DK_PID=$!  # nsenter -> unshare -> sh -> dockerd: one pid all along
  dk_save_state
  for i in $(seq $(( DK_UP_TIMEOUT * 10 ))); do
    [ -z "$DK_CTD_PID" ] && [ -s "$d/containerd.pid" ] && DK_CTD_PID=$(cat "$d/containerd.pid") && dk_save_state
    [ -z "$DK_MNTNS" ] && [ -s "$d/launch.pid" ] && DK_MNTNS=$(readlink "/proc/$DK_PID/ns/mnt") && dk_save_state
    dk version >/dev/null 2>&1 && break
    if ! dk_alive "$DK_PID"; then
      dk_log "dockerd exited during start"
      tail -n 5 "$d/launch.log" "$d/containerd.log" "$d/dockerd.log" 2>/dev/null | sed 's/^/      /' >&2
      return 1
    fi
    sleep 0.1
  done
  dk version >/dev/null 2>&1 || { dk_log "dockerd did not answer within ${DK_UP_TIMEOUT}s"; 
    tail -n 5 "$d/dockerd.log" | sed 's/^/      /' >&2; return 1; }
  [ "$(cat "$d/dockerd.pid" 2>/dev/null)" = "$DK_PID" ] ||
    dk_log "note: dockerd.pid says $(cat "$d/dockerd.pid" 2>/dev/null), expected $DK_PID"
  [ -n "$DK_MNTNS" ] || DK_MNTNS=$(readlink "/proc/$DK_PID/ns/mnt")
  dk_save_state

  dk_build_rootfs_tar "$d/rootfs" "$d/rootfs.tar" &&
  dk import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$d/rootfs.tar" "$DK_IMAGE" >/dev/null ||
    { dk_log "image import failed"; return 1; }
  rm -rf "$d/rootfs" "$d/rootfs.tar"
  t1=$(dk_now)
  DK_UP_SECONDS=$(dk_secs "$t0" "$t1")
}

dk_save_state() {
  [ -d "$DK_DIR" ] || return 0
  declare -p DK_NAME DK_DIR DK_SOCK DK_HOST_NS DK_OUT_NS DK_NETNS DK_OUT_NETNS DK_CGROUP \
    DK_PID DK_CTD_PID DK_MNTNS 2>/dev/null | sed 's/^declare -- /declare -g /' >"$DK_DIR/state"
}

# Every process of an instance, found by identity and never by name: in its
# host network namespace (dockerd, containerd, shims), in its private mount
# namespace, or in its cgroup parent (the containers).
dk_pids_of() {  # dk_pids_of NETNS MNTNS CGROUP (ns as "net:[inode]", "mnt:[inode]")
  python3 - "$1" "$2" "$3" "$$" <<'PY'
import os, sys
netns, mntns, cg, me = sys.argv[1:5]
if mntns == os.readlink("/proc/self/ns/mnt"):
    mntns = ""  # never match the caller's (the machine's) mount namespace
skip = {me, str(os.getpid()), str(os.getppid())}
for p in os.listdir("/proc"):
    if not p.isdigit() or p in skip:
        continue
    try:
        n = os.readlink("/proc/%s/ns/net" % p)
        m = os.readlink("/proc/%s/ns/mnt" % p)
        c = open("/proc/%s/cgroup" % p).read()
    except OSError:
        continue
    if (netns and n == netns) or (mntns and m == mntns) or (":/%s/" % cg) in c:
        print(p)
PY
}

dk_wait_gone() {  # dk_wait_gone SECONDS PID...: 0 once none of them runs
  local secs=$1 i p alive
  shift
  for i in $(seq $(( secs * 10 ))); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

docker_down() {  # docker_down NAME
  local name=$1 d netns pids p i cgdirs m
  d=${DK_DIR_OF[$name]:-}
  [ -n "$d" ] && [ -f "$d/state" ] || { unset "DK_DIR_OF[$name]"; dk_down_namespaces "$name"; return 0; }
  # shellcheck disable=SC1090
  source "$d/state"
  netns=
  [ -e "$DK_NETNS" ] && netns="net:[$(stat -L -c %i "$DK_NETNS")]"

  # Containers first (SIGKILL): dockerd's own shutdown would wait for each.
  if dk_alive "$DK_PID" && timeout 10 "$DK_CLI" -H "unix://$DK_SOCK" version >/dev/null 2>&1; then
    pids=$(DOCKER_CONFIG=$d/cli timeout 20 "$DK_CLI" -H "unix://$DK_SOCK" ps -aq 2>/dev/null)
    [ -n "$pids" ] && DOCKER_CONFIG=$d/cli timeout 60 "$DK_CLI" -H "unix://$DK_SOCK" rm -f $pids >/dev/null 2>&1
  fi
  if dk_alive "$DK_PID"; then
    kill -TERM "$DK_PID" 2>/dev/null
    dk_wait_gone 20 "$DK_PID" || kill -KILL "$DK_PID" 2>/dev/null
  fi
  if dk_alive "$DK_CTD_PID"; then
    kill -TERM "$DK_CTD_PID" 2>/dev/null
    dk_wait_gone 10 "$DK_CTD_PID" || kill -KILL "$DK_CTD_PID" 2>/dev/null
  fi
  # What is left (shims, containers, helpers): SIGKILL, then wait.
  for i in 1 2 3; do
    pids=$(dk_pids_of "$netns" "$DK_MNTNS" "$DK_CGROUP")
    [ -z "$pids" ] && break
    kill -KILL $pids 2>/dev/null
    dk_wait_gone 10 $pids
  done
  wait "$DK_PID" 2>/dev/null
  # Mounts under DK_DIR in our own mount namespace (only without the private
  # mount namespace, or if dockerd died before unmounting): deepest first.
  for i in 1 2 3; do
    m=$(findmnt -rn -o TARGET | grep -F "$d/" | sort -r)
    [ -z "$m" ] && break
    echo "$m" | while read -r p; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null; done
  done
  # cgroup parent in every hierarchy, deepest first (all empty by now).
  for p in /sys/fs/cgroup/*/"$DK_CGROUP" /sys/fs/cgroup/"$DK_CGROUP"; do
    [ -d "$p" ] || continue
    for i in 1 2 3 4 5; do
      find "$p" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$p" ] || break
      sleep 0.2
    done
  done
  dk_down_namespaces "$name"
  rm -rf "$d"
  unset "DK_DIR_OF[$name]"
  return 0
}

dk_down_namespaces() {
  local ns
  for ns in "moat-dk-$1-host" "moat-dk-$1-out"; do
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null
  done
  return 0
}

# dk_residue NAME DIR: prints what is left of an instance (nothing: none).
dk_residue() {
  local name=$1 d=$2 p c
  ip netns list | grep -E "^moat-dk-$name-(host|out)( |$)" | sed 's/^/netns /'
  [ -e "$d" ] && echo "dir $d"
  findmnt -rn -o TARGET | grep -F "$d" | sed 's/^/mount /'
  for p in /sys/fs/cgroup/*/"moat-dk-$name" /sys/fs/cgroup/"moat-dk-$name"; do
    [ -e "$p" ] && echo "cgroup $p"
  done
  for p in /proc/[0-9]*; do
    c=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)
    [[ $c == *"$d"* ]] && echo "process ${p#/proc/}: $c"
  done
  return 0
}

docker_down_all() {
  local n
  for n in "${!DK_DIR_OF[@]}"; do docker_down "$n"; done
}

# Every instance still up goes down on exit, before lib.sh's cleanup.
trap 'docker_down_all; cleanup' EXIT
