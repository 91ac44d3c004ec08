# common.sh - sourced by demo.sh, test.sh and bench.sh: Debian packages,
# the build, and bpffs bookkeeping. Not meant to be run directly.

MOAT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOAT_BUILD=${MOAT_BUILD:-$MOAT_ROOT/build}
MOAT_BIN=$MOAT_BUILD/userspace/moat

# Build and run dependencies, all from Debian's archive.
MOAT_PACKAGES=(
  cmake g++ make pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libcli11-dev nlohmann-json3-dev libgtest-dev libyaml-cpp-dev libcpp-httplib-dev
  iproute2 iputils-ping netcat-openbsd socat python3 util-linux iptables nftables procps
  iperf3 wrk nginx-light gnuplot-nox strace libclang-rt-14-dev
  docker.io containerd runc busybox-static curl
  podman conmon containernetworking-plugins
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# become_root "$@": every entry script's first step. Root runs on; a user
# with sudo is asked once and the script starts again as root with the same
# arguments, so README's commands work as written for both.
become_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=MOAT_BUILD bash "$0" "$@"
  fi
  need_root
}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$(basename "$0") needs root: it loads BPF programs and builds network namespaces" \
         "(run it as root, or install sudo)" >&2
    exit 2
  fi
}

install_missing() {
  local missing=() p
  for p in "${MOAT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx and iperf3 are run by the benchmark inside its namespaces only: no
  # package may start a service on the machine while installing.
  local blocker=/usr/sbin/policy-rc.d made=0
  if [ ! -e "$blocker" ]; then printf '#!/bin/sh\nexit 101\n' >"$blocker"; chmod +x "$blocker"; made=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  local rc=$?
  [ "$made" = 1 ] && rm -f "$blocker"
  return $rc
}

build() {
  log "building in $MOAT_BUILD"
  cmake -S "$MOAT_ROOT" -B "$MOAT_BUILD" -Wno-dev >/dev/null
  cmake --build "$MOAT_BUILD" -j"$(nproc)" 2>&1 | grep -E 'error|warning|Error' || true
  [ -x "$MOAT_BIN" ] || { echo "build failed: $MOAT_BIN missing" >&2; exit 1; }
}

# prepare: what every entry script does first.
prepare() {
  need_root
  install_missing
  build
  note_bpffs
}

# moat mounts bpffs at /sys/fs/bpf when the machine has none; a script that
# found none there unmounts it again on exit, once nothing is pinned in it.
BPFFS_WAS_MOUNTED=1
note_bpffs() {
  if ! mountpoint -q /sys/fs/bpf || [ "$(stat -f -c %T /sys/fs/bpf)" != "bpf_fs" ]; then
    BPFFS_WAS_MOUNTED=0
  fi
}
restore_bpffs() {
  if [ "$BPFFS_WAS_MOUNTED" = 0 ] && mountpoint -q /sys/fs/bpf \
     && [ -z "$(ls -A /sys/fs/bpf 2>/dev/null)" ]; then
    umount /sys/fs/bpf
  fi
}
