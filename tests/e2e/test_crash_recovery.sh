#!/usr/bin/env bash
# A crash leaves a true record, concurrent applies serialise, `down` always
# cleans (issue 14). Two large applies, A and B, on the lab's interfaces:
# different containers, icc, published ports and a policy generation of
# some 400 entries (A) and 1,400 (B); the probe srv:80 from c1 passes under
# A and is dropped under B. A's policy file (19 KB) is small enough for an
# intent to hold it, B's (68 KB) goes to a blob. "The record equals the kernel" is checked three ways:
# status says the record is sound and names the kernel's policy revision;
# a dry run of the recorded file changes nothing (every map entry, filter
# and policy generation already as it says); traffic follows it.
#   1. a crash (SIGKILL) at every named point of an apply;
#   2. 50 kills at random moments of an apply;
#   3. 20 pairs of concurrent applies, one of each pair failing after its
#      first kernel writes;
#   4. `down` with the record deleted, and with it truncated: no filter,
#      qdisc, pin, link or program left; `status` says what it found.
source "$(dirname "$0")/lib.sh"
L=$(unique_lab crash)
I=e2e$$
N=12
HOSTNS=/run/netns/moat-$L-host
M() { nsenter --net="$HOSTNS" "$MOAT" "$@"; }
ON_EXIT+=("\"\$MOAT\" down --instance $I")
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# gen DIR: lab.json (no interfaces), A.json/B.json (interfaces named) and
# their policy files.
python3 - "$TMP" "$N" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
def ctr(i, iface):
  name = "srv" if i == 0 else f"c{i}"
  c = {"name": name, "namespace": "x", "labels": {"role": name},
       "networks": [{"network": "pods", "ip": f"10.77.0.{i + 2}"}], "expose": ["80/tcp"]}
  if iface: c["networks"][0]["interface"] = f"mve{i}n0"
  return c
def main(count, icc, publish, iface=True):
  cs = [ctr(i, iface) for i in range(count)]
  if publish: cs[1]["publish"] = ["18080:80"]
  return {"networks": [{"name": "pods", "subnet": "10.77.0.0/24", "icc": icc}],
          "namespaces": [{"name": "x", "labels": {"ns": "x"}}], "containers": cs}
def policies(base, deny_srv, n):
  # Many egress rules to distinct CIDRs and ports: a big generation to write.
  rules = [{"to": [{"ipBlock": {"cidr": f"172.{16 + i // 250}.{i % 250}.0/24"}}],
            "ports": [{"protocol": "TCP", "port": base + i}]} for i in range(n)]
  rules.append({"to": [{"namespaceSelector": {}}]})
  items = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "egress", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}}]
  ingress = [] if deny_srv else [{}]
  items.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "srv-ingress", "namespace": "x"},
                "spec": {"podSelector": {"matchLabels": {"role": "srv"}},
                         "policyTypes": ["Ingress"], "ingress": ingress}})
  return {"apiVersion": "v1", "kind": "List", "items": items}
json.dump(main(n, True, False, iface=False), open(f"{d}/lab.json", "w"))
json.dump(main(n, True, False), open(f"{d}/A.json", "w"))
json.dump(main(n - 4, False, True), open(f"{d}/B.json", "w"))
json.dump(policies(1000, False, 200), open(f"{d}/A-pol.json", "w"))
json.dump(policies(3000, True, 700), open(f"{d}/B-pol.json", "w"))
PY
A=("$TMP/A.json" "$TMP/A-pol.json")
B=("$TMP/B.json" "$TMP/B-pol.json")
lab_up "$L" "$TMP/lab.json" --no-enforce
SRV=10.77.0.2

apply_file() {  # apply_file A|B [moat args]: the files of A or B
  local which=$1
  shift
  if [ "$which" = A ]; then M apply "${A[@]}" --instance "$I" "$@"; else M apply "${B[@]}" --instance "$I" "$@"; fi
}

# record_true WHAT: the record is sound and equals the kernel. Sets $REC to
# A or B, the file it names.
REC=
record_true() {
  local what=$1 st src rc
  st=$(M status --instance "$I" --json 2>"$TMP/status.err")
  rc=$?
  if [ $rc -ne 0 ]; then
    bad "$what: status exits $rc"; sed 's/^/    /' "$TMP/status.err"; echo "$st" | head -5; return 1
  fi
  src=$(echo "$st" | jq_ 'd["source"]')
  REC=$(basename "$src" .json)
  local dry
  dry=$(apply_file "$REC" --dry-run --json 2>/dev/null | jq_ 'd["changed"]' 2>&1)
  if [ "$dry" != False ]; then
    bad "$what: a dry run of the recorded $REC changes nothing (got $dry)"
    apply_file "$REC" --dry-run 2>&1 | sed 's/^/    /'; return 1
  fi
  local revs
  revs=$(echo "$st" | jq_ 'd["policy"]["revision"] == d["policy"]["recorded_revision"] != 0')
  if [ "$revs" != True ]; then
    bad "$what: recorded policy revision is the kernel's"
    echo "$st" | jq_ 'd["policy"]["revision"], d["policy"]["recorded_revision"]'; return 1
  fi
  if [ -e "/run/moat/$I/intent.json" ]; then bad "$what: an intent is left"; return 1; fi
  M policy list --instance "$I" --json >/dev/null 2>&1 || { bad "$what: policy list fails"; return 1; }
  return 0
}

# The traffic the record promises: srv:80 from c1 passes under A only.
traffic_follows() {
  if [ "$REC" = A ]; then
    must_pass "$1: under A, c1 reaches srv:80" "$L" c1 tcp $SRV 80 srv
  else
    must_drop "$1: under B, c1 cannot reach srv:80" "$L" c1 tcp $SRV 80
  fi
}

t0=$(date +%s%N)
apply_file A >/dev/null || bad "first apply of A"
t1=$(date +%s%N)
apply_file B >/dev/null || bad "first apply of B"
t2=$(date +%s%N)
record_true "after A then B" && ok "after A then B, the record names B and equals the kernel"
check "and it names B" [ "$REC" = B ]
traffic_follows "after B"
echo "    first apply $(( (t1 - t0) / 1000000 )) ms, an apply that keeps the programs $(( (t2 - t1) / 1000000 )) ms"

# Invalid input on a running instance changes nothing (the record included):
# a YAML policy file with one byte that is not UTF-8 was applied to the
# kernel before issue 14, and then the record was left empty.
printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {role: "s\xffrv"}}\n  policyTypes: [Ingress]\n' >"$TMP/latin1.yaml"
M apply "$TMP/A.json" "$TMP/latin1.yaml" --instance "$I" >/dev/null 2>"$TMP/latin1.err"
check "a policy file that is not UTF-8 exits 2" [ $? -eq 2 ]
check "and says where" grep -q "latin1.yaml:5:.*invalid UTF-8" "$TMP/latin1.err"
record_true "after the refused file" && check "and the record still names B and equals the kernel" [ "$REC" = B ]
traffic_follows "after the refused file"

# ---- 1. a crash at every named point ---------------------------------------------------
next=A
for point in intent check-ports pin write swap-policy attach detach remove-stale verify-attached record; do
  MOAT_CRASH_AT=$point apply_file $next >/dev/null 2>&1
  rc=$?
  check "apply of $next killed at $point (exit $rc)" [ $rc -eq 137 ]
  if record_true "killed at $point"; then
    ok "killed at $point: the next command finds a true record (it names $REC)"
    traffic_follows "killed at $point"
  fi
  [ "$REC" = A ] && next=B || next=A
done
# A crash before the policy flip goes back, one after it goes forward.
MOAT_CRASH_AT=write apply_file $next >/dev/null 2>&1
record_true "killed before the flip" && check "killed before the policy flip: back to $REC" [ "$REC" != "$next" ]
MOAT_CRASH_AT=attach apply_file $next >/dev/null 2>&1
record_true "killed after the flip" && check "killed after the policy flip: forward to $next" [ "$REC" = "$next" ]

# Forward from an intent in either form: an input file under 64 KiB is in
# the intent itself, a larger one in a blob it names (B's policy file).
for w in $([ "$REC" = A ] && echo "B A" || echo "A B"); do
  MOAT_CRASH_AT=attach apply_file $w >/dev/null 2>&1
  form=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))
print(','.join('text' if 'text' in f else 'blob' if 'blob' in f else '?' for f in d['inputs']['files']))" \
    "/run/moat/$I/intent.json" 2>&1)
  [ "$w" = A ] && want=text,text || want=text,blob
  check "killed after the flip to $w: the intent holds its files as $want (got $form)" [ "$form" = "$want" ]
  record_true "killed after the flip to $w" && check "and the next command goes forward to $w from it" [ "$REC" = "$w" ]
  traffic_follows "forward to $w"
done

# An interrupted apply whose intent cannot be settled (its blob gone) stays
# on record through an apply that fails to compile: that apply writes its
# own intent only right before the kernel, never over this one. Then, the
# blob back, the next command finishes it.
apply_file A >/dev/null 2>&1 || bad "apply A before the unsettled intent"
MOAT_CRASH_AT=attach apply_file B >/dev/null 2>&1
cp "/run/moat/$I/intent.json" "$TMP/intent.before"
blob=$(python3 -c "import json,sys; print(next(f['blob'] for f in json.load(open(sys.argv[1]))['inputs']['files'] if 'blob' in f))" \
  "$TMP/intent.before" 2>/dev/null)
if [ -n "$blob" ]; then
  mv "/run/moat/$I/blobs/$blob" "$TMP/blob.saved"
  echo '{"networks": [{"name": "pods", "subnet": "10.77.0.0/24"}], "containers": [{"name": "a",
    "networks": [{"network": "pods", "ip": "10.77.0.40", "interface": "nosuch0"}]}]}' >"$TMP/missing.json"
  M apply "$TMP/missing.json" --instance "$I" >/dev/null 2>"$TMP/missing.err"
  check "an apply that fails to compile, with an intent that cannot be settled, fails" [ $? -ne 0 ]
  check "and leaves that intent as it was" cmp -s "$TMP/intent.before" "/run/moat/$I/intent.json"
  mv "$TMP/blob.saved" "/run/moat/$I/blobs/$blob"
  record_true "the blob back" && check "the blob back, the next command finishes the interrupted apply" [ "$REC" = B ]
else
  bad "the intent of an interrupted apply of B names a blob"
fi

# ---- 2. 50 kills at random moments -------------------------------------------------------
# moat itself is killed (exec: no shell in between), at a moment drawn
# uniformly over one apply's duration. A kill that leaves an intent behind
# interrupted the apply after it began to compile (the intent is written
# meanwhile); one that the next command then finishes (the record names
# what was being applied) interrupted it after its policy switch, half-way
# through its kernel writes.
span=0  # microseconds of the shorter of two applies from here
for w in B A; do
  s0=$(date +%s%N); apply_file $w >/dev/null 2>&1; s1=$(date +%s%N)
  d=$(( (s1 - s0) / 1000 ))
  [ $span -eq 0 ] || [ $d -lt $span ] && span=$d
done
REC=A
echo "    an apply from here takes $((span / 1000)) ms"
read -ra delays < <(python3 -c "import random; print(' '.join('%.4f' % (random.uniform(0, $span) / 1e6) for _ in range(50)))")
good=0 killed=0 left=0 midway=0
for k in $(seq 50); do
  [ "$REC" = A ] && { files=("${B[@]}"); target=B; } || { files=("${A[@]}"); target=A; }
  (exec nsenter --net="$HOSTNS" "$MOAT" apply "${files[@]}" --instance "$I" >/dev/null 2>&1) &
  pid=$!
  sleep "${delays[$((k - 1))]}"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  [ $? -eq 137 ] && killed=$((killed + 1))
  intent=0
  [ -e "/run/moat/$I/intent.json" ] && intent=1 left=$((left + 1))
  record_true "random kill $k" && good=$((good + 1))
  [ $intent -eq 1 ] && [ "$REC" = "$target" ] && midway=$((midway + 1))
done
echo "    of 50 kills, $killed landed before the apply finished, $left left an intent," \
  "$midway after the policy switch (finished by the next command)"
check "50 random kills: the record was true after each ($good/50)" [ "$good" -eq 50 ]
# Against a binary without intents this counts nothing: the check above is
# the one that must hold for it too.
check "some kills interrupted an apply after its policy switch ($midway)" [ "$midway" -gt 0 ]
traffic_follows "after the random kills"

# ---- 3. 20 pairs of concurrent applies -------------------------------------------------
points=(check-ports pin write swap-policy attach detach remove-stale verify-attached)
serial=0
for k in $(seq 20); do
  [ $((k % 2)) -eq 0 ] && { winner=A; loser=B; } || { winner=B; loser=A; }
  fp=${points[$((k % ${#points[@]}))]}
  apply_file $winner --json >"$TMP/w.out" 2>"$TMP/w.err" &
  wp=$!
  MOAT_FAIL_AT=$fp apply_file $loser >"$TMP/l.out" 2>"$TMP/l.err" &
  lp=$!
  wait $wp; wrc=$?
  wait $lp; lrc=$?
  if [ $wrc -eq 0 ] && [ $lrc -eq 1 ] && grep -q "failing at $fp" "$TMP/l.err" &&
     record_true "pair $k" && [ "$REC" = $winner ]; then
    serial=$((serial + 1))
  else
    echo "    pair $k: $winner exit $wrc, $loser (failing at $fp) exit $lrc, record names $REC"
    sed 's/^/    /' "$TMP/w.err" "$TMP/l.err" | head -6
  fi
done
check "20 concurrent pairs: the good apply wins, the failing one changes nothing ($serial/20)" \
  [ "$serial" -eq 20 ]
traffic_follows "after the concurrent pairs"

# ---- 4. down from the kernel alone -------------------------------------------------------
# Everything moat holds for the instance, as ids, before the record goes.
kernel_objects() {
  M status --instance "$I" --json |
    jq_ '" ".join([str(p["id"]) for p in d["programs"]] + [str(h["prog_id"]) for h in d["socket_hooks"]])'
}
nothing_left() {  # nothing_left WHAT PROGS
  local what=$1 progs=$2 p gone n
  n=0
  for i in $(seq 0 $((N - 1))); do
    tc -n "moat-$L-host" filter show dev "mve${i}n0" ingress 2>/dev/null | grep -q . && n=$((n + 1))
    tc -n "moat-$L-host" filter show dev "mve${i}n0" egress 2>/dev/null | grep -q . && n=$((n + 1))
  done
  check "$what: no TC filter left ($n)" [ "$n" -eq 0 ]
  check "$what: no clsact qdisc left" bash -c "! tc -n moat-$L-host qdisc show | grep -q clsact"
  check "$what: no pin left" [ ! -e "/sys/fs/bpf/moat/$I" ]
  check "$what: no record left" [ ! -e "/run/moat/$I" ]
  for i in $(seq 20); do
    gone=1
    for p in $progs; do bpftool prog show id "$p" >/dev/null 2>&1 && gone=0; done
    [ $gone = 1 ] && break
    sleep 0.1
  done
  check "$what: no program (nor the links that held the socket hooks) left" [ $gone = 1 ]
}
# A record that parses but is not moat's (a "format" of another type, by
# hand): the damaged-record answer, not a JSON library's exception.
cp "/run/moat/$I/record.json" "$TMP/record.saved"
echo '{"format": "x", "state": {}, "inputs": {}, "options": {}}' >"/run/moat/$I/record.json"
M status --instance "$I" >"$TMP/st.txt" 2>&1
check "status on a record of another shape exits 1" [ $? -eq 1 ]
check "and says the record cannot be trusted" grep -q "cannot be trusted" "$TMP/st.txt"
cp "$TMP/record.saved" "/run/moat/$I/record.json"
record_true "the record put back" && ok "the record put back is true again"
# The record's large parts (input files, the rule table) live in blobs/
# beside it: one gone is a damaged record too, not an empty rule table.
mv "/run/moat/$I/blobs" "$TMP/blobs.saved"
M status --instance "$I" >"$TMP/st.txt" 2>&1
check "status with the record's blobs gone exits 1" [ $? -eq 1 ]
check "and says the record cannot be trusted" grep -q "cannot be trusted" "$TMP/st.txt"
mv "$TMP/blobs.saved" "/run/moat/$I/blobs"
record_true "the blobs put back" && ok "the record with its blobs put back is true again"

for damage in deleted truncated; do
  apply_file A >/dev/null || bad "apply A before the record is $damage"
  progs=$(kernel_objects)
  check "status lists programs and socket hooks ($(echo $progs | wc -w))" [ "$(echo $progs | wc -w)" -gt 5 ]
  # state.json: where moat kept its record before issue 14, so that the
  # test means the same against an older binary.
  for f in "/run/moat/$I/record.json" "/run/moat/$I/state.json"; do
    [ -e "$f" ] || continue
    if [ $damage = deleted ]; then rm -f "$f"; else truncate -s 100 "$f"; fi
  done
  if [ $damage = truncated ]; then
    M status --instance "$I" >"$TMP/st.txt" 2>&1
    rc=$?
    check "status on a truncated record exits 1" [ $rc -eq 1 ]
    check "and says the record cannot be trusted" grep -q "cannot be trusted" "$TMP/st.txt"
    check "and lists the filters it found in the kernel" grep -q "filter on mve0n0" "$TMP/st.txt"
    check "and says how to repair" grep -q "to repair: .moat down --instance $I" "$TMP/st.txt"
    M apply "${A[@]}" --instance "$I" >/dev/null 2>"$TMP/ap.err"
    check "apply on a truncated record refuses, pointing at down" grep -q "moat down --instance $I" "$TMP/ap.err"
  fi
  "$MOAT" down --instance "$I" >"$TMP/down.out" 2>&1  # from the root namespace: found by scanning
  check "down with the record $damage exits 0" [ $? -eq 0 ]
  nothing_left "down with the record $damage" "$progs"
  must_pass "after down ($damage), traffic flows unfiltered again" "$L" c1 tcp $SRV 80 srv
done
down_and_finish "$L"
