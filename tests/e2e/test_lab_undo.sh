#!/usr/bin/env bash
# A lab's record rebuilds what was applied. `lab up` guards the lab's
# bridges, and a `lab apply` that fails after its first kernel write
# (MOAT_FAIL_AT) or is killed there (MOAT_CRASH_AT) is undone, or finished,
# from the record alone: bridges still guarded, every interface still bound,
# the policy of the record (or of the finished apply) enforced. Before, the
# record kept the unbound lab file: undoing said "no interface" and left
# the instance broken, and a lab's bridges were unguarded until its first
# `lab apply`.
source "$(dirname "$0")/lib.sh"
L=$(unique_lab undo)
F=$TMP/lab.json
DENY=$TMP/deny.json
OPEN=$TMP/open.json
python3 - "$F" "$DENY" "$OPEN" <<'PY'
import json, sys
json.dump({"networks": [{"name": "front", "subnet": "172.27.0.0/16"}],
           "containers": [{"name": "web", "labels": {"app": "web"}, "networks": ["front"],
                           "expose": ["80/tcp"]},
                          {"name": "c1", "networks": ["front"]}]}, open(sys.argv[1], "w"))
isolate = {"name": "web-in", "podSelector": {"matchLabels": {"app": "web"}},
           "policyTypes": ["Ingress"]}
json.dump({"policies": [dict(isolate, ingress=[])]}, open(sys.argv[2], "w"))
json.dump({"policies": [dict(isolate, ingress=[{"ports": [{"protocol": "TCP", "port": 80}]}])]},
          open(sys.argv[3], "w"))
PY
lab_up "$L" "$F"
HOSTNS=/run/netns/moat-$L-host
WEB=$(ip_of "$F" web front)

# The dataplane as status shows it, without what traffic changes, and
# without the policy's revision: an undo after the flip installs the
# record's policy again as a revision of its own.
S() { nsenter --net="$HOSTNS" "$MOAT" status --instance "lab-$L" --json 2>"$TMP/status.err" | python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if k not in ("counters", "run_count", "run_time_ns", "memory", "revision",
                             "recorded_revision", "generations", "tracked_entries")
                and "conntrack" not in k}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(sys.stdin)), sort_keys=True))'; }
guarded() {  # the network's bridge carries from_bridge, as status says
  S | python3 -c 'import json,sys; d=json.load(sys.stdin)
sys.exit(0 if [b["name"] for b in d.get("bridges", [])] == ["mbr0"] else 1)'
}

echo "lab up"
check "lab up guards the network's bridge" guarded
must_pass "c1 -> web:80 (no policy yet)" "$L" c1 tcp "$WEB" 80 web

echo "a lab apply that fails after its first kernel write is undone"
policy_apply "$L" "$DENY"
must_drop "c1 -> web:80 denied by $(basename "$DENY")" "$L" c1 tcp "$WEB" 80
before=$(S)
check "status reads the record" [ -n "$before" ]
for point in write swap-policy attach; do
  MOAT_FAIL_AT=$point "$MOAT" lab apply --lab "$L" "$OPEN" >/dev/null 2>"$TMP/err"
  rc=$?
  check "apply failing at $point exits 1 (rc=$rc)" [ $rc -eq 1 ]
  check "it says so, and the undo worked" \
    bash -c "grep -q 'failing at $point' '$TMP/err' && ! grep -q 'undoing it failed' '$TMP/err'"
  grep -q 'undoing it failed' "$TMP/err" && sed 's/^/    | /' "$TMP/err"
  check "the dataplane is as before ($point)" [ "$before" = "$(S)" ]
done
check "still guarded" guarded
must_drop "c1 -> web:80 still denied" "$L" c1 tcp "$WEB" 80

echo "a lab apply killed before the policy flip goes back, one killed after it goes forward"
MOAT_CRASH_AT=write "$MOAT" lab apply --lab "$L" "$OPEN" >/dev/null 2>&1
rc=$?
check "apply killed at write (rc=$rc)" [ $rc -eq 137 ]
after=$(S)
check "the next command settles it back to the record" [ "$before" = "$after" ]
[ "$before" = "$after" ] || sed 's/^/    | /' "$TMP/status.err"
must_drop "c1 -> web:80 still denied" "$L" c1 tcp "$WEB" 80
MOAT_CRASH_AT=attach "$MOAT" lab apply --lab "$L" "$OPEN" >/dev/null 2>&1
rc=$?
check "apply killed at attach (rc=$rc)" [ $rc -eq 137 ]
fwd=$(S)
check "the next command finishes it" bash -c '[ -n "$1" ] && [ "$1" != "$2" ]' _ "$fwd" "$before"
[ -n "$fwd" ] || sed 's/^/    | /' "$TMP/status.err"
check "still guarded" guarded
must_pass "c1 -> web:80 allowed by $(basename "$OPEN")" "$L" c1 tcp "$WEB" 80 web
policy_apply "$L" "$OPEN"
check "applying what was finished changes nothing" [ "$(S)" = "$fwd" ]
lab_down "$L"
check "lab down leaves no namespace, pin, state or hosts file" no_residue "$L"
finish
