#!/usr/bin/env bash
# `moat apply` on existing interfaces (the form Docker/CNI integrations use),
# re-apply as a no-op, incremental updates, invalid input leaving the running
# dataplane untouched, enforcement outliving the moat process, `moat down`
# leaving nothing behind.
source "$(dirname "$0")/lib.sh"
L=$(unique_lab life)
I=e2e$$
F=$TMP/lifecycle.json
HOSTNS=/run/netns/moat-$L-host
M() { nsenter --net="$HOSTNS" "$MOAT" "$@"; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

write_file() {  # write_file ICC_FRONT WITH_C3
  python3 - "$F" "$1" "$2" <<'PY'
import json, sys
path, icc, with_c3 = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
ctrs = [
  {"name": "f1", "networks": [{"network": "front", "ip": "10.81.0.2", "interface": "mve0n0"}], "expose": ["80/tcp"]},
  {"name": "f2", "networks": [{"network": "front", "ip": "10.81.0.3", "interface": "mve1n0"}], "expose": ["80/tcp"]},
  {"name": "b1", "networks": [{"network": "back",  "ip": "10.82.0.2", "interface": "mve2n0"}], "expose": ["80/tcp"]},
]
if with_c3:
  ctrs.append({"name": "b2", "networks": [{"network": "back", "ip": "10.82.0.3", "interface": "mve3n0"}], "expose": ["80/tcp"]})
json.dump({"networks": [{"name": "front", "subnet": "10.81.0.0/24", "icc": icc},
                        {"name": "back",  "subnet": "10.82.0.0/24"}],
           "containers": ctrs}, open(path, "w"), indent=1)
PY
}

write_file 1 1
lab_up "$L" "$F" --no-enforce
must_pass "without moat, front reaches back" "$L" f1 tcp 10.82.0.2 80 b1

out=$(M apply "$F" --instance "$I" --json)
check "first apply adds 4 endpoints and attaches 4 interfaces" \
  [ "$(echo "$out" | jq_ 'd["endpoints"]["added"], d["interfaces"]["attached"]')" = "4 4" ]
must_drop "after apply, front cannot reach back" "$L" f1 tcp 10.82.0.2 80
must_pass "after apply, f1 reaches f2" "$L" f1 tcp 10.81.0.3 80 f2

# With 512 KiB or more of files named on its command line, moat puts its
# heap on huge pages (cli/main.cpp): the heap's mappings of `moat lab exec`
# (the parent of the command it runs) include one advised for them
# (VmFlags "hg"); not so without a large file. `sh -c SCRIPT BIG` names one.
head -c 600000 /dev/zero > "$TMP/big"
heap_flags='awk "/\[heap\]/ {h = 1} h && /^VmFlags/ {print; h = 0}" /proc/$PPID/smaps'
heap=$("$MOAT" lab exec --lab "$L" f1 -- sh -c "$heap_flags" "$TMP/big")
check "moat's heap is on huge pages ($(echo $heap))" grep -qw hg <<<"$heap"
heap=$("$MOAT" lab exec --lab "$L" f1 -- sh -c "$heap_flags")
check "but not for a small command ($(echo $heap))" bash -c '! grep -qw hg <<<"$1"' _ "$heap"
# A large input that fails to compile (70,000 CIDRs: the identity cache
# holds 65,536) leaves nothing, though its blobs were written while it
# compiled (reconcile.cpp).
python3 - "$TMP/toomany.json" <<'PY'
import json, sys
rules = [{"from": [{"ipBlock": {"cidr": f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}/32"}}]}
         for i in range(70000)]
json.dump({"policies": [{"name": "big", "podSelector": {}, "ingress": rules}]}, open(sys.argv[1], "w"))
PY
M apply "$F" "$TMP/toomany.json" --instance "${I}big" 2>"$TMP/err.txt"
rc=$?
check "a first apply over the identity cache's size fails (exit $rc)" [ "$rc" -ne 0 ]
check "and says why" grep -q "ipcache map holds at most" "$TMP/err.txt"
check "and leaves no state behind" test ! -e "/run/moat/${I}big" -a ! -e "/run/moat/${I}big.lock"
# So does a small one: the intent an apply writes while it compiles is
# removed when the apply fails before the kernel (reconcile.cpp; this
# fails if it is left behind).
echo '{"networks": [{"name": "n", "subnet": "10.99.0.0/24"}], "containers": [{"name": "a",
  "networks": [{"network": "n", "ip": "10.99.0.2", "interface": "nosuch0"}]}]}' >"$TMP/missing.json"
M apply "$TMP/missing.json" --instance "${I}miss" 2>"$TMP/err.txt"
rc=$?
check "a first apply naming a missing interface fails (exit $rc)" [ "$rc" -ne 0 ]
check "and says why" grep -q "interface nosuch0 does not exist" "$TMP/err.txt"
check "and leaves no state behind" test ! -e "/run/moat/${I}miss" -a ! -e "/run/moat/${I}miss.lock"
out=$(M apply "$F" --instance "$I" --json)
check "re-applying the same file changes nothing" [ "$(echo "$out" | jq_ 'd["changed"]')" = False ]
# A policy file of 512 KiB or more takes the large input's path (cli/main.cpp:
# the heap on huge pages, the rule table built after the entries): 7,001
# ingress rules for every container; f1 may reach f2 on 80, f2 may not
# reach f1, which it could before.
must_pass "before the large policy, f2 reaches f1" "$L" f2 tcp 10.81.0.2 80 f1
python3 - "$TMP/many.json" <<'PY'
import json, sys
rules = [{"from": [{"ipBlock": {"cidr": "10.81.0.2/32"}}], "ports": [{"protocol": "TCP", "port": 80}]}]
rules += [{"from": [{"ipBlock": {"cidr": f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}/32"}}],
           "ports": [{"protocol": "TCP", "port": 1000 + i % 100}]} for i in range(7000)]
json.dump({"policies": [{"name": "many", "podSelector": {}, "ingress": rules}]}, open(sys.argv[1], "w"))
PY
check "the large policy file holds 512 KiB or more" [ "$(stat -c %s "$TMP/many.json")" -ge 524288 ]
out=$(M apply "$F" "$TMP/many.json" --instance "$I" --json)
check "the large policy applies ($(echo "$out" | jq_ 'd["policy"]'))" \
  [ "$(echo "$out" | jq_ 'd["policy"]["changed"] and d["policy"]["entries"] > 7000')" = True ]
must_pass "under the large policy, f1 reaches f2 on 80" "$L" f1 tcp 10.81.0.3 80 f2
must_drop "under the large policy, f2 no longer reaches f1" "$L" f2 tcp 10.81.0.2 80
out=$(M apply "$F" --instance "$I" --json)
check "the file without it applies again" [ "$(echo "$out" | jq_ 'd["changed"]')" = True ]
must_pass "and f2 reaches f1 again" "$L" f2 tcp 10.81.0.2 80 f1
# Verifying the programs is most of an apply's time: the same binary
# keeps its pinned TC programs and its attached socket hooks (the record
# says which program each link runs) and loads none (libbpf's feature
# probes are not counted).
# prog_loads TYPE: BPF_PROG_LOAD calls of that type in one apply of $F.
prog_loads() {
  nsenter --net="$HOSTNS" strace -f -e trace=bpf "$MOAT" apply "$F" --instance "$I" 2>&1 >/dev/null |
    grep BPF_PROG_LOAD | grep -c "$1"
}
loads=$(prog_loads BPF_PROG_TYPE_SCHED_CLS)
check "and loads no TC program ($loads BPF_PROG_LOAD of SCHED_CLS)" [ "$loads" = 0 ]
loads=$(prog_loads BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
check "nor a socket-hook program ($loads BPF_PROG_LOAD of CGROUP_SOCK_ADDR)" [ "$loads" = 0 ]
# A link someone removed is found missing: the object is loaded again and
# the hook put back; the apply after that loads nothing again.
PINS=/sys/fs/bpf/moat/$I
rm "$PINS/link_connect4"
changed=$(M apply "$F" --instance "$I" --json | jq_ 'd["socket_hooks_changed"]')
check "a removed socket-hook link is put back (socket_hooks_changed $changed)" \
  bash -c "[ '$changed' = True ] && [ -e '$PINS/link_connect4' ]"
loads=$(prog_loads BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
check "then nothing is loaded again ($loads BPF_PROG_LOAD of CGROUP_SOCK_ADDR)" [ "$loads" = 0 ]
# The record vouches for the links only as the kernel holds them: a link
# detached under its pin, or a pin the record does not name, sends the
# apply the long way (load, judge each link) and is mended there.
bpftool link detach pinned "$PINS/link_bind4"
attached_link() {  # attached_link NAME: the pinned link is attached to a cgroup
  bpftool link show pinned "$PINS/$1" -j |
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("cgroup_id", 0) else 1)'
}
detached_link() { ! attached_link "$1"; }
check "(link_bind4 detached under its pin)" detached_link link_bind4
changed=$(M apply "$F" --instance "$I" --json | jq_ 'd["socket_hooks_changed"]')
check "a detached socket-hook link is attached again (socket_hooks_changed $changed)" \
  [ "$changed" = True ]
check "link_bind4 is attached" attached_link link_bind4
bpftool link pin pinned "$PINS/link_connect6" "$PINS/link_extra"
changed=$(M apply "$F" --instance "$I" --json | jq_ 'd["socket_hooks_changed"]')
check "a link pin the record does not name is removed (socket_hooks_changed $changed)" \
  bash -c "[ '$changed' = True ] && [ ! -e '$PINS/link_extra' ] && [ -e '$PINS/link_connect6' ]"
loads=$(prog_loads BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
check "and the apply after loads nothing ($loads BPF_PROG_LOAD of CGROUP_SOCK_ADDR)" [ "$loads" = 0 ]
# Whether our filters are still on every interface is asked in one batch
# over one rtnetlink socket (tc.cpp, attached_prog_ids()); it was a qdisc
# request and a query per direction, each on a socket of its own.
# tc_sends: sendto() calls carrying TC requests in one apply of $F (strace
# names the message types, or prints their numbers where it cannot tell the
# socket's protocol).
tc_sends() {
  nsenter --net="$HOSTNS" strace -f -e trace=sendto "$MOAT" apply "$F" --instance "$I" 2>&1 >/dev/null |
    grep -c 'nlmsg_type=\(RTM_GETTFILTER\|RTM_NEWQDISC\|RTM_NEWTFILTER\|0x2e \|0x24 \|0x2c \)'
}
sends=$(tc_sends)
check "a repeated apply asks for 4 interfaces' filters in one send ($sends)" [ "$sends" = 1 ]
# Filters someone removed are found by that check and put back.
tc_() { tc -n "moat-$L-host" "$@"; }
tc_ filter del dev mve0n0 ingress pref 28015 handle 0x6d6f bpf
tc_ filter del dev mve2n0 egress pref 28015 handle 0x6d6f bpf
out=$(M apply "$F" --instance "$I" --json)
check "two removed filters are put back (interfaces attached: $(echo "$out" | jq_ 'd["interfaces"]["attached"]'))" \
  [ "$(echo "$out" | jq_ 'd["interfaces"]["attached"]')" = 2 ]
ours_on() { tc_ filter show dev "$1" "$2" | grep -q 'handle 0x6d6f'; }
check "mve0n0 ingress has our filter again" ours_on mve0n0 ingress
check "mve2n0 egress has our filter again" ours_on mve2n0 egress
# Our slot holding another program (moat's own to_container, on an
# ingress): the check finds it; attach() asks for the qdisc and both
# filters in one send, meets EEXIST, and replaces that filter in place.
prog_on() { tc_ filter show dev "$1" "$2" | grep -o ' name [a-z_]*' | head -1; }
# (tc -n remounts /sys, and with it the bpffs the pin is on: nsenter instead.)
nsenter --net="$HOSTNS" tc filter replace dev mve0n0 ingress pref 28015 handle 0x6d6f bpf da \
  pinned "$PINS/prog_to_container"
check "(set up: mve0n0 ingress runs to_container)" [ "$(prog_on mve0n0 ingress)" = " name to_container" ]
out=$(M apply "$F" --instance "$I" --json)
check "a program in our slot that is not ours for it is replaced (attached: $(echo "$out" | jq_ 'd["interfaces"]["attached"]'))" \
  [ "$(echo "$out" | jq_ 'd["interfaces"]["attached"]')" = 1 ]
check "mve0n0 ingress runs from_container again, egress to_container" \
  [ "$(prog_on mve0n0 ingress)$(prog_on mve0n0 egress)" = " name from_container name to_container" ]
must_drop "and front still cannot reach back" "$L" f1 tcp 10.82.0.2 80

before=$(M status --instance "$I" --json | jq_ 'd["endpoint_entries"], [p["id"] for p in d["programs"]]')
sed 's/"10.81.0.3"/"10.99.0.3"/' "$F" > "$TMP/bad.json"
# refused WHAT PATTERN FILE...: apply exits 2 naming PATTERN, and the
# running dataplane is what it was.
refused() {
  local what=$1 pattern=$2
  shift 2
  M apply "$@" --instance "$I" 2>"$TMP/err.txt"
  local rc=$?
  check "$what exits 2" [ "$rc" -eq 2 ]
  check "$what: the error says $pattern" grep -qF "$pattern" "$TMP/err.txt"
  after=$(M status --instance "$I" --json | jq_ 'd["endpoint_entries"], [p["id"] for p in d["programs"]]')
  check "$what: the running dataplane is untouched" [ "$before" = "$after" ]
}
refused "an invalid file" 'bad.json: containers[1].networks[0].ip' "$TMP/bad.json"
must_drop "and still enforces" "$L" f2 tcp 10.82.0.2 80
# Mistakes that span entries are found before the kernel too (issue 14):
# apply took a file with one interface under two containers as far as its
# compile step (exit 1), and an empty policy file as "no policies".
sed 's/"mve1n0"/"mve0n0"/' "$F" > "$TMP/shared.json"
refused "one interface under two containers" \
  'interface "mve0n0" is already used by container "f1"' "$TMP/shared.json"
printf '# nothing here yet\n' > "$TMP/empty.yaml"
refused "an empty policy file" 'holds no policy and no namespace' "$F" "$TMP/empty.yaml"
# One byte that is not UTF-8 in a policy file: applied to the kernel, then
# the saving of the inputs failed (exit 1) and left the record empty.
printf 'name: p\npodSelector:\n  matchLabels:\n    app: "x\xff"\n' > "$TMP/latin1.yaml"
refused "a policy file that is not UTF-8" 'latin1.yaml:4:12: invalid UTF-8' "$F" "$TMP/latin1.yaml"
check "and the record still reads" M policy list --instance "$I" --json

# Packets counted so far at CONTAINER, both directions (stats --json).
counted() {
  M stats --instance "$I" --json |
    jq_ "sum(x['directions'][k]['packets'] + x['directions'][k]['drops_total'] for x in d['attachments'] if x['container'] == '$1' for k in x['directions'])"
}
f1_before=$(counted f1)
write_file 0 1
out=$(M apply "$F" --instance "$I" --json)
check "icc off on front updates exactly its 2 endpoints" \
  [ "$(echo "$out" | jq_ 'd["endpoints"]["added"], d["endpoints"]["updated"], d["endpoints"]["removed"], d["interfaces"]["attached"]')" = "0 2 0 0" ]
f1_after=$(counted f1)
check "f1's counters go on across an update of its endpoint ($f1_before -> $f1_after packets)" \
  [ "$f1_before" -gt 0 ] && [ "$f1_after" -ge "$f1_before" ]
must_drop "icc off: f1 -> f2" "$L" f1 tcp 10.81.0.3 80
must_pass "back is unaffected: b1 -> b2" "$L" b1 tcp 10.82.0.3 80 b2
b2_counted=$(counted b2)

write_file 0 0
out=$(M apply "$F" --instance "$I" --json)
check "removing b2 detaches its interface and removes its endpoint" \
  [ "$(echo "$out" | jq_ 'd["endpoints"]["removed"], d["interfaces"]["detached"]')" = "1 1" ]
write_file 0 1
M apply "$F" --instance "$I" >/dev/null
b2_again=$(counted b2)
# From zero, not exactly 0: the container's kernel may send a stray packet
# (IPv6 neighbour discovery) in between; kept counters would be >= before.
check "b2 attached again counts from zero (it had $b2_counted packets, now $b2_again)" \
  [ "$b2_counted" -gt 3 ] && [ "$b2_again" -lt 3 ]
write_file 0 0
M apply "$F" --instance "$I" >/dev/null
has_clsact() {  # has_clsact [DEV]: fails loudly if tc cannot answer
  local out
  out=$(tc -n "moat-$L-host" qdisc show ${1:+dev "$1"}) || { echo "    tc failed"; return 2; }
  grep -q clsact <<<"$out"
}
has_clsact mve0n0
check "applied interfaces carry a clsact qdisc" [ $? -eq 0 ]
has_clsact mve3n0
check "b2's interface has no clsact qdisc left" [ $? -eq 1 ]

names=$(M status --instance "$I" --json | jq_ '" ".join(sorted(p["name"] for p in d["programs"]))')
check "status lists the container, uplink and bridge programs ($names)" \
  [ "$names" = "from_bridge from_container from_world to_container to_world" ]
# Every program moat loaded, socket hooks included: all must be gone after down.
progs=$(M status --instance "$I" --json |
        jq_ '" ".join([str(p["id"]) for p in d["programs"]] + [str(h["prog_id"]) for h in d["socket_hooks"]])')
check "status lists the socket hooks too" [ "$(echo $progs | wc -w)" -gt 4 ]
"$MOAT" down --instance "$I" >/dev/null   # from the root namespace: moat finds the lab host itself
check "down removes the pins" [ ! -e "/sys/fs/bpf/moat/$I" ]
check "down removes the state" [ ! -e "/run/moat/$I" ]
has_clsact
check "down removes every clsact qdisc it created" [ $? -eq 1 ]
gone=1
for i in $(seq 20); do gone=1; for p in $progs; do bpftool prog show id "$p" >/dev/null 2>&1 && gone=0; done; [ $gone = 1 ] && break; sleep 0.1; done
[ $gone = 1 ] || { echo "    still loaded:"; for p in $progs; do bpftool prog show id "$p"; done; }
check "the programs are gone from the kernel" [ "$gone" -eq 1 ]
must_pass "after down, traffic flows unfiltered again" "$L" f1 tcp 10.82.0.2 80 b1
down_and_finish "$L"
