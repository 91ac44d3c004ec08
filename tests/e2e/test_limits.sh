#!/usr/bin/env bash
# Map sizes from the file's `limits` (issue 17, memory): a 10-container lab
# with the defaults holds under 16 MiB of maps, as the kernel counts them;
# the instance keeps the sizes it was made with (a file asking for others is
# refused before anything changes), and sizes the host cannot afford are
# refused. What a full table does is tested in tests/bpf (NatSmallTable).
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/ten-containers.json
L=$(unique_lab limits)
I=lab-$L
lab_up "$L" "$F"

status_json() { "$MOAT" lab status --lab "$L" --json; }
status_json >"$TMP/status.json"

# mem KEY: a figure of the status's "memory" section.
mem() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["memory"][sys.argv[2]])' "$TMP/status.json" "$1"; }
map_max() {  # map_max NAME: max_entries of the instance's map NAME
  python3 -c 'import json,sys
print([m["max_entries"] for m in json.load(open(sys.argv[1]))["maps"] if m["name"]==sys.argv[2]][0])' "$TMP/status.json" "$1"
}

bytes=$(mem map_bytes)
echo "    maps of a 10-container lab: $bytes bytes"
check "a 10-container lab holds under 16 MiB of maps ($bytes bytes)" \
  test "$bytes" -gt 0 -a "$bytes" -lt $((16 << 20))
check "the limits are the defaults" \
  test "$(mem limits | tr -d ' ')" = "{'conntrack':16384,'endpoints':1024,'published_ports':4096,'socket_nat':4096}"
check "ct and ct6 hold limits.conntrack entries" test "$(map_max ct)/$(map_max ct6_ring)" = 16384/16384
check "stats holds two slots per endpoint" test "$(map_max stats)" = 2048
# Every map's memory is the kernel's own figure: bpftool agrees on `ct`.
ct_id=$(python3 -c 'import json,sys
print([m["id"] for m in json.load(open(sys.argv[1]))["maps"] if m["name"]=="ct"][0])' "$TMP/status.json")
ct_bytes=$(python3 -c 'import json,sys
print([m["bytes"] for m in json.load(open(sys.argv[1]))["maps"] if m["name"]=="ct"][0])' "$TMP/status.json")
check "the figure for ct is bpftool's memlock ($ct_bytes)" \
  test "$(bpftool map show id "$ct_id" | sed -n 's/.*memlock \([0-9]*\)B.*/\1/p')" = "$ct_bytes"

# A 10-rule policy adds its generations, sized to what they hold (a hash
# made for the most a file may hold had 16 MiB of buckets, each).
python3 - "$TMP/ten-rules.json" <<'PY'
import json, sys
rules = [{"from": [{"ipBlock": {"cidr": f"10.9.0.{i}/32"}}], "ports": [{"protocol": "TCP", "port": 80}]}
         for i in range(1, 10)]
rules.append({"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 80}]})
json.dump({"policies": [{"name": "f1-in", "podSelector": {"matchLabels": {}},
                         "policyTypes": ["Ingress"], "ingress": rules}]}, open(sys.argv[1], "w"))
PY
policy_apply "$L" "$TMP/ten-rules.json"
status_json >"$TMP/status.json"
bytes=$(mem map_bytes)
gens=$(python3 -c 'import json,sys
print(sum(g["bytes"] for m in json.load(open(sys.argv[1]))["maps"] for g in m.get("generations", [])))' "$TMP/status.json")
echo "    with a 10-rule policy: $bytes bytes, of which the generations $gens"
check "a 10-rule policy's generations are in the figure ($gens bytes)" test "$gens" -gt 0
check "a 10-container lab with a 10-rule policy holds under 16 MiB of maps ($bytes bytes)" \
  test "$bytes" -lt $((16 << 20))
must_pass "the policy lets f2 reach f1 on 80" "$L" f2 tcp "$(ip_of "$F" f1 front)" 80 f1

# The lab's file as the lab applies it (its interfaces, bridges and uplink),
# with limits of our own.
python3 - "$F" "/run/moat/labs/$L.json" "$TMP" <<'PY'
import json, sys
main, lab = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
veths = {c["name"]: [i["host_interface"] for i in c["interfaces"]] for c in lab["containers"]}
for c in main["containers"]:
    c["networks"] = [{"network": n, "interface": veths[c["name"]][k]}
                     for k, n in enumerate(c["networks"])]
bridges = {n["name"]: n["bridge"] for n in lab["networks"]}
for n in main["networks"]:
    n["bridge"] = bridges[n["name"]]
main["host"] = {"uplinks": ["uplink0"]}
for name, limits in {"bigger": {"conntrack": 65536},
                     "same": {"conntrack": 16384, "endpoints": 1024, "published_ports": 4096,
                              "socket_nat": 4096},
                     "huge": {"conntrack": 16 << 20}}.items():
    main["limits"] = limits
    open(f"{sys.argv[3]}/{name}.json", "w").write(json.dumps(main))
PY
host_apply() {  # host_apply FILE [env...]: `moat apply` of the instance, in the lab host
  env "${@:2}" nsenter --net=/run/netns/"$(target_ns "$L" host)" \
    "$MOAT" apply --instance "$I" "$1" >"$TMP/apply.log" 2>&1
}
before=$(bpftool map show pinned "/sys/fs/bpf/moat/$I/ct" | head -1)

host_apply "$TMP/bigger.json"; rc=$?
check "other limits are refused (exit $rc)" test "$rc" = 1
check "naming the limit, the maps' size and the way out" \
  grep -q "limits.conntrack 65536 where its maps hold 16384.*moat down --instance $I" "$TMP/apply.log"
[ "$rc" = 1 ] && sed 's/^/    /' "$TMP/apply.log"
check "refused before the apply began: nothing to undo" bash -c "! grep -qi 'undo' '$TMP/apply.log'"
check "and nothing changed: the same ct map" \
  test "$(bpftool map show pinned "/sys/fs/bpf/moat/$I/ct" | head -1)" = "$before"

host_apply "$TMP/same.json"; rc=$?
check "the same limits written out apply (exit $rc)" test "$rc" = 0
[ "$rc" = 0 ] || sed 's/^/    /' "$TMP/apply.log"

host_apply "$TMP/huge.json" MOAT_HOST_RAM_MIB=2048; rc=$?
check "limits the host cannot afford are refused (exit $rc)" test "$rc" = 1
check "saying what they would take" grep -q "more than 1/8 of this host's 2048 MiB" "$TMP/apply.log"
sed 's/^/    /' "$TMP/apply.log"

# `moat validate` refuses what apply would, in the same words: a file it
# passes must not fail the apply for capacity.
python3 - "$TMP/over.json" "$TMP/fits.json" <<'PY'
import json, sys
def doc(n):
  return {"limits": {"endpoints": 16}, "networks": [{"name": "n", "subnet": "172.29.0.0/24"}],
          "containers": [{"name": f"c{i}", "networks": ["n"]} for i in range(n)]}
json.dump(doc(16), open(sys.argv[1], "w"))
json.dump(doc(15), open(sys.argv[2], "w"))
PY
"$MOAT" validate "$TMP/over.json" >/dev/null 2>"$TMP/validate.err"; rc=$?
check "validate refuses attachments beyond limits.endpoints (exit $rc)" test "$rc" = 2
check "naming the limit as apply does" \
  grep -q "16 container attachments exceed limits.endpoints, 16" "$TMP/validate.err"
"$MOAT" validate "$TMP/fits.json" >/dev/null 2>"$TMP/validate.err"; rc=$?
check "and passes one attachment fewer (exit $rc)" test "$rc" = 0
[ "$rc" = 0 ] || sed 's/^/    /' "$TMP/validate.err"

must_pass "f2 still reaches f1 after the refusals" "$L" f2 tcp "$(ip_of "$F" f1 front)" 80 f1
down_and_finish "$L"
