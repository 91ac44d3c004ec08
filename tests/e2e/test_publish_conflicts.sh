#!/usr/bin/env bash
# Conflicts: two publishes of one host port/protocol are rejected by
# validate, lab up and apply, naming both, applying nothing. A port a host
# program already listens on cannot be published (clear error, previous
# state kept); a published port is reserved: host programs cannot bind it.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/publish-conflict.json
L=$(unique_lab pubconf)
I=pubconf$$
UP=198.18.0.1

names_both() {  # the message names both publishes of each clash
  grep -q 'containers\[1\]\.publish\[0\]: host port 5000/tcp is already published by container "alpha" (containers\[0\]\.publish\[0\]: "5000:5000")' "$1" &&
  grep -q 'containers\[1\]\.publish\[1\]: host port 8005/tcp is already published by container "alpha" (containers\[0\]\.publish\[1\]: "8000-8010:8000-8010")' "$1" ||
  { sed 's/^/    /' "$1"; return 1; }
}

echo "two publishes of one host port"
"$MOAT" validate "$F" >/dev/null 2>"$TMP/err"
check "validate exits 2" [ $? -eq 2 ]
check "validate names both publishes of each clash" names_both "$TMP/err"
check "same port, other protocol (5000/udp) is not a clash" bash -c "! grep -q 'publish\[2\]' '$TMP/err'"
LABS+=("$L")
"$MOAT" lab up "$F" --name "$L" >/dev/null 2>"$TMP/err"
check "lab up exits 2" [ $? -eq 2 ]
check "lab up names both publishes" names_both "$TMP/err"
check "lab up made nothing" no_residue "$L"

# `moat apply` needs a lab host; it must refuse before touching anything.
B=$TMP/base.json
P=$TMP/published.json
python3 - "$B" "$P" <<'PY'
import json, sys
def doc(publish):
  return {"host": {"uplinks": ["uplink0"]},
          "networks": [{"name": "front", "subnet": "172.27.0.0/16"}],
          "containers": [{"name": "web", "expose": ["5000/tcp"], "publish": publish,
                          "networks": [{"network": "front", "interface": "mve0n0"}]}]}
json.dump(doc([]), open(sys.argv[1], "w"))
json.dump(doc(["5000:5000"]), open(sys.argv[2], "w"))
PY
lab_up "$L" "$B"
HOSTNS=/run/netns/moat-$L-host
A() { nsenter --net="$HOSTNS" "$MOAT" apply "$@"; }
# The dataplane's configuration as status shows it, without what traffic changes.
S() { nsenter --net="$HOSTNS" "$MOAT" status --instance "$1" --json | python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if k not in ("counters", "run_count", "run_time_ns") and "conntrack" not in k}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(sys.stdin)), sort_keys=True))'; }
A "$F" --instance "$I" >/dev/null 2>"$TMP/err"
check "apply exits 2" [ $? -eq 2 ]
check "apply names both publishes" names_both "$TMP/err"
check "apply pinned nothing" [ ! -e "/sys/fs/bpf/moat/$I" ]
check "apply left no state" [ ! -e "/run/moat/$I" ]
[ -e "/sys/fs/bpf/moat/$I" ] && nsenter --net="$HOSTNS" "$MOAT" down --instance "$I" >/dev/null

echo "a host program already listens on a port the file publishes"
check "a host program listens on 5000" \
  serve "$L" host tcp 5000 TCP-LISTEN:5000,reuseaddr,fork 'SYSTEM:read -r _; echo hostprog'
hostprog=$SERVED
must_pass "outside -> $UP:5000 reaches the host program" "$L" outside tcp $UP 5000 hostprog
before=$(S "lab-$L")
A "$P" --instance "lab-$L" >/dev/null 2>"$TMP/err"
rc=$?
check "apply exits non-zero (rc=$rc)" [ "$rc" -ne 0 ]
check "the error names the port" grep -q '5000' "$TMP/err"
sed 's/^/    | /' "$TMP/err"
check "the dataplane is unchanged" [ "$before" = "$(S "lab-$L")" ]
must_pass "outside -> $UP:5000 still reaches the host program" "$L" outside tcp $UP 5000 hostprog
must_pass "the previous state still enforces and serves: host -> web:5000" "$L" host tcp \
  "$(ip_of "$B" web front)" 5000 web
stop_server "$hostprog"

echo "once the host program is gone, the port can be published, and is reserved"
check "apply succeeds" bash -c "nsenter --net='$HOSTNS' '$MOAT' apply '$P' --instance 'lab-$L' >/dev/null"
must_pass "outside -> $UP:5000 reaches web" "$L" outside tcp $UP 5000 web
bind_in_host() {  # bind_in_host tcp|udp ADDR PORT -> prints ok or the errno name
  "$MOAT" lab exec --lab "$L" host -- python3 -c '
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do; TIME_WAIT is no conflict
try:
    s.bind((sys.argv[2], int(sys.argv[3])))
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))' "$@"
}
out=$(bind_in_host tcp 0.0.0.0 5000)
check "a host program cannot bind 0.0.0.0:5000/tcp ($out)" [ "$out" = EPERM ]
out=$(bind_in_host tcp 127.0.0.1 5000)
check "a host program cannot bind 127.0.0.1:5000/tcp ($out)" [ "$out" = EPERM ]
out=$(bind_in_host tcp $UP 5000)
check "a host program cannot bind $UP:5000/tcp ($out)" [ "$out" = EPERM ]
out=$(bind_in_host tcp 0.0.0.0 5001)
check "an unpublished port binds fine: 5001/tcp ($out)" [ "$out" = ok ]
out=$(bind_in_host udp 0.0.0.0 5000)
check "the other protocol binds fine: 5000/udp ($out)" [ "$out" = ok ]
"$MOAT" lab exec --lab "$L" host -- timeout 2 socat -u TCP-LISTEN:5000,reuseaddr STDOUT >/dev/null 2>"$TMP/err"
rc=$?
check "socat TCP-LISTEN:5000 in the lab host fails at once (rc=$rc)" bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "with EPERM" grep -q 'Operation not permitted' "$TMP/err"

check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check "no socket listens in the lab host" host_listens_nothing "$L"
down_and_finish "$L"
