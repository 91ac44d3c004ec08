#!/usr/bin/env bash
# One rule changed (issue 17): `moat lab apply` of a file that differs from
# the applied one inside one rule changes that rule from the policy image
# saved with the record, without reading or compiling the rest
# (reconcile_one_rule(), "one_rule" in --json). Checked against traffic
# (what must pass and what must be dropped, both ways), against the whole
# compile (the same file with one more byte outside every rule takes the
# whole path, which must find the kernel holding its own generation
# already: "changed": false), against `moat explain` (the record's rule
# table has the new rule), and where the image cannot make the change (a
# pod selector, a new ipBlock) the whole apply makes it. Then a fast apply
# killed after the switch is finished by the next command. Last, a file
# kept in a blob: its change, the rule table's and the image's are kept as
# patches, each read back by the next change. A file of 1 MiB and more
# is compared with its blob a window at a time, never read whole. Last, a
# whole apply of many entries fills the idle generation too, so that the
# next change writes only its difference there.
# The lab: tests/e2e/policy/ipblock.json (server 10.89.0.10, client .20,
# other .30, all in namespace x, each serving 80/tcp).
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/policy/ipblock.json
L=$(unique_lab p1r)
SERVER=10.89.0.10
POLICY=$TMP/server-in.json

# server-in with rule 0 from FROM on port 80; rules 1 and 2 keep both
# blocks in use on port 81, so that moving rule 0 between them moves no
# identity. Extra text goes after the document's last brace.
write_policy() {  # write_policy FROM [TRAILER]
  cat >"$POLICY" <<EOF
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
 "metadata": {"name": "server-in", "namespace": "x"},
 "spec": {"podSelector": {"matchLabels": {"pod": "server"}}, "policyTypes": ["Ingress"],
  "ingress": [
   {"from": [$1], "ports": [{"protocol": "TCP", "port": 80}]},
   {"from": [{"ipBlock": {"cidr": "10.89.0.30/32"}}], "ports": [{"protocol": "TCP", "port": 81}]},
   {"from": [{"ipBlock": {"cidr": "10.89.0.20/32"}}], "ports": [{"protocol": "TCP", "port": 81}]}]}}${2:-}
EOF
}
CLIENT_BLOCK='{"ipBlock": {"cidr": "10.89.0.20/32"}}'
OTHER_BLOCK='{"ipBlock": {"cidr": "10.89.0.30/32"}}'

# apply_json DESC: `moat lab apply --json` of $POLICY; its report in $TMP/rep.json.
apply_json() {
  if "$MOAT" lab apply --lab "$L" --json "$POLICY" >"$TMP/rep.json" 2>"$TMP/apply.err"; then
    ok "$1: moat lab apply"
  else
    bad "$1: moat lab apply (exit $?)"
    sed 's/^/    /' "$TMP/apply.err"
  fi
}
field() {  # field EXPR: a Python expression over the report `r`
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($1)" "$TMP/rep.json" 2>/dev/null
}
is() { (( $1 )); }  # is "ARITHMETIC": for check
one_rule() { field 'r["policy"]["one_rule"]'; }
# How the change read the saved image: "in place" (its file's mapping).
image_read() { field 'r["policy"]["one_rule_image"]'; }
changed() { field 'r["policy"]["changed"]'; }

# Traffic: who reaches server:80 when rule 0 names WHO.
reaches() {  # reaches STEP WHO(client|other)
  local step=$1 who=$2 not=other
  [ "$who" = other ] && not=client
  must_pass "$step: $who -> server:80 (rule 0 names $who)" "$L" "$who" tcp $SERVER 80 server
  must_drop "$step: $not -> server:80 (rule 0 no longer names $not)" "$L" "$not" tcp $SERVER 80
}

# The kernel holds what a whole compile of the file gives: the same file
# with a trailing newline is a change outside every rule, so the whole
# apply reads and compiles it, and finds its generation in force already.
whole_agrees() {  # whole_agrees STEP FROM
  write_policy "$2" $'\n'
  apply_json "$1: the same rules, one byte more"
  check "$1: that takes the whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
  check "$1: and finds the kernel holding its own compile (changed $(changed))" \
    [ "$(changed)" = False ]
}

lab_up "$L" "$F"

echo "(a) the first apply of the file is whole, and saves the image"
write_policy "$CLIENT_BLOCK"
apply_json "(a)"
check "(a) whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(a)" client

echo "(b) rule 0 from other's block: one rule, changed in part"
write_policy "$OTHER_BLOCK"
apply_json "(b)"
check "(b) one rule: $(one_rule)" [ "$(one_rule)" = "spec.ingress[0]" ]
check "(b) the saved image read where it lies ($(image_read))" [ "$(image_read)" = "in place" ]
check "(b) a new policy revision ($(changed))" [ "$(changed)" = True ]
reaches "(b)" other
out=$("$MOAT" explain --lab "$L" other $SERVER 80/tcp 2>&1)
check "(b) explain other -> server 80/tcp: allowed by ingress[0] from 10.89.0.30/32, kernel agrees" \
  bash -c 'grep -q "ingress: *allowed by x/server-in ingress\[0\]" <<<"$1" &&
    grep -q "10.89.0.30/32" <<<"$1" && grep -q "kernel:.*(agrees)" <<<"$1"' _ "$out"
whole_agrees "(b)" "$OTHER_BLOCK"

echo "(c) and back, from the image the whole apply just saved (the newline kept)"
write_policy "$CLIENT_BLOCK" $'\n'
apply_json "(c)"
check "(c) one rule: $(one_rule)" [ "$(one_rule)" = "spec.ingress[0]" ]
check "(c) the saved image read where it lies ($(image_read))" [ "$(image_read)" = "in place" ]
reaches "(c)" client
whole_agrees "(c)" "$CLIENT_BLOCK"

echo "(d) a pod selector: the image keeps no labels, the whole apply makes it"
write_policy '{"podSelector": {"matchLabels": {"pod": "other"}}}'
apply_json "(d)"
check "(d) whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(d)" other

echo "(e) a block no rule had: identities move, the whole apply makes it"
write_policy '{"ipBlock": {"cidr": "10.89.0.20/31"}}'
apply_json "(e)"
check "(e) whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(e)" client

echo "(f) a one-rule apply killed after the switch: the next command finishes it"
write_policy "$OTHER_BLOCK"
apply_json "(f) back to rule 0 from other (whole: the block set changes)"
write_policy "$CLIENT_BLOCK"
MOAT_CRASH_AT=swap-policy "$MOAT" lab apply --lab "$L" "$POLICY" >"$TMP/crash.out" 2>&1
rc=$?
check "(f) killed at swap-policy (exit $rc)" [ "$rc" -ne 0 ]
check "(f) its intent is left" bash -c "ls /run/moat/lab-$L/intent.json >/dev/null 2>&1"
"$MOAT" explain --lab "$L" client $SERVER 80/tcp >/dev/null 2>&1
check "(f) the next command (explain) settles it (no intent left)" \
  bash -c "! ls /run/moat/lab-$L/intent.json >/dev/null 2>&1"
reaches "(f)" client
whole_agrees "(f)" "$CLIENT_BLOCK"

echo "(g) a file of 64 KiB and more (kept in a blob): the change is kept as a patch of it"
# recorded_text STATE_DIR INPUT_FILE: whether the record's blob of the policy
# file (a whole blob, or a patch: base[at, at+cut) replaced) gives its text.
recorded_text() {
  python3 - "$@" <<'PY'
import json, struct, sys
d, want = sys.argv[1], open(sys.argv[2], "rb").read()
rec = json.load(open(d + "/record.json"))
name = [f for f in rec["inputs"]["files"] if f["name"] == sys.argv[2]][0]["blob"]
raw = open(d + "/blobs/" + name, "rb").read()
if name.startswith("p-"):
    assert raw[:8] == b"moatpch1"
    size, at, cut = struct.unpack("<QQQ", raw[8:32])
    base = open(d + "/blobs/" + name[2:].rsplit("-", 2)[0], "rb").read()
    assert len(base) == size
    raw = base[:at] + raw[32:] + base[at + cut:]
print(name.split("-")[0] if name.startswith("p-") else "whole", "same" if raw == want else "differs")
PY
}
PAD=$(printf '%*s' 70000 '')
write_policy "$OTHER_BLOCK" "$PAD"
apply_json "(g) rule 0 from other, padded"
# kept_as_patch STEP: $POLICY, rule 0 from client, applied: one rule's
# change, the file kept as a patch of its blob.
kept_as_patch() {
  apply_json "($1)"
  check "($1) one rule: $(one_rule)" [ "$(one_rule)" = "spec.ingress[0]" ]
  got=$(recorded_text "/run/moat/lab-$L" "$POLICY")
  check "($1) the record keeps the file as a patch of its blob, byte for byte ($got)" \
    [ "$got" = "p same" ]
  reaches "($1)" client
}
write_policy "$CLIENT_BLOCK" "$PAD"
kept_as_patch g1
# hits ID: rule ID's hit count (`moat stats --json`), -1 when not listed.
hits() {
  "$MOAT" stats --lab "$L" --json 2>/dev/null | python3 -c "import json,sys
r = json.load(sys.stdin)
print({p['rule_id']: p['hits'] for p in r.get('policy_rules', [])}.get($1, -1))"
}
# Rule 2 (client -> 81) admits a connection (nothing listens: it is reset after).
echo probe | "$MOAT" lab exec --lab "$L" client -- nc -n -w1 $SERVER 81 >/dev/null 2>&1
h2=$(hits 2)
check "(g1) rules 0 and 2 have hits ($(hits 0), $h2)" is "$(hits 0) > 0 && $h2 > 0"
for step in g2 g3; do
  [ $step = g2 ] && write_policy "$OTHER_BLOCK" "$PAD" || write_policy "$CLIENT_BLOCK" "$PAD"
  apply_json "($step)"
  # Found from the text the patch gives: a wrong one is not one rule's change.
  check "($step) one rule again, from the patched text: $(one_rule)" \
    [ "$(one_rule)" = "spec.ingress[0]" ]
  # With the step before's patch (g3), ranges of the same length.
  check "($step) the saved image read where it lies, patched ($(image_read))" \
    [ "$(image_read)" = "in place" ]
  got=$(recorded_text "/run/moat/lab-$L" "$POLICY")
  check "($step) still a patch of a whole blob, byte for byte ($got)" [ "$got" = "p same" ]
  # The image too: the change from the saved image, which this step read
  # with the previous step's patch (a wrong one refuses the change above).
  check "($step) the image's change kept as a patch of it" \
    test -s "/run/moat/lab-$L/policy.image.patch"
  # Only rule 0 changed: its count restarts, rule 2 (same id, same rule) keeps its own.
  check "($step) rule 0's hits restart ($(hits 0)), rule 2's stay ($(hits 2) = $h2)" \
    is "$(hits 0) == 0 && $(hits 2) == $h2"
  cp "/run/moat/lab-$L/policy.image.patch" "$TMP/$step.patch"
done
reaches "(g3)" client

echo "(g4) the image's patch of the step before (as a crash between the record and the patch leaves it)"
cp "$TMP/g2.patch" "/run/moat/lab-$L/policy.image.patch"
write_policy "$OTHER_BLOCK" "$PAD"
apply_json "(g4)"
# Its tag is g2's record, not g3's: the image is not used (and were it, the
# rule it holds is not the one the file had: the change would be refused).
check "(g4) whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(g4)" other
write_policy "$CLIENT_BLOCK" "$PAD"
apply_json "(g5)"
check "(g5) one rule again from the image the whole apply saved: $(one_rule)" \
  [ "$(one_rule)" = "spec.ingress[0]" ]
reaches "(g5)" client
whole_agrees "(g5)" "$CLIENT_BLOCK"
check "(g5) the whole apply saves its image whole, and no patch of another" \
  test ! -e "/run/moat/lab-$L/policy.image.patch"

# A rule edited to the entries it had (spaces inside it): one rule's change
# that changes nothing in the kernel, as the whole apply would find; its
# hit count goes on.
reaches "(g6)" client
h0=$(hits 0)
write_policy " $CLIENT_BLOCK " $'\n'
apply_json "(g6) rule 0 with spaces inside"
check "(g6) one rule: $(one_rule)" [ "$(one_rule)" = "spec.ingress[0]" ]
check "(g6) the policy unchanged (changed $(changed))" [ "$(changed)" = False ]
check "(g6) rule 0's hits go on ($(hits 0) >= $h0 > 0)" is "$(hits 0) >= $h0 && $h0 > 0"

echo "(h) a file of 1 MiB and more: not read whole, compared with its blob a window at a time"
BIG_PAD=$(printf '%*s' 1100000 '')
write_policy "$OTHER_BLOCK" "$BIG_PAD"
apply_json "(h) rule 0 from other, padded to 1.1 MB"
check "(h) whole apply: the padding changed (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(h)" other
write_policy "$CLIENT_BLOCK" "$BIG_PAD"
kept_as_patch h1
# Rule 0 and the padding's last window changed: two changes, the whole apply.
write_policy "$OTHER_BLOCK" "$BIG_PAD "
apply_json "(h2) rule 0 and the padding's end"
check "(h2) whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(h2)" other
got=$(recorded_text "/run/moat/lab-$L" "$POLICY")
check "(h2) the record has the file whole, byte for byte ($got)" [ "$got" = "whole same" ]
write_policy "$CLIENT_BLOCK" "$BIG_PAD "
apply_json "(h3)"
check "(h3) one rule: $(one_rule)" [ "$(one_rule)" = "spec.ingress[0]" ]
reaches "(h3)" client
whole_agrees "(h3)" "$CLIENT_BLOCK"

# Rule 0 made longer than the first bytes read past the change (64 KiB):
# 4,000 more ports after its peer. The change, its peer, is at its start:
# the rest of the rule is read twice as far, and again, until it ends.
write_long() {  # write_long FROM
  write_policy "$1" "$BIG_PAD"
  python3 - "$POLICY" <<'PY'
import sys
p = sys.argv[1]
extra = "".join(', {"protocol": "TCP", "port": %d}' % port for port in range(20000, 24000))
t = open(p).read()
assert '"port": 80}]}' in t
open(p, "w").write(t.replace('"port": 80}]}', '"port": 80}' + extra + ']}', 1))
PY
  check "rule 0 has 4,000 ports more ($(grep -o '"port": 2[0-9]*' "$POLICY" | wc -l))" \
    [ "$(grep -o '"port": 2[0-9]*' "$POLICY" | wc -l)" = 4000 ]
}
write_long "$OTHER_BLOCK"
apply_json "(h4) rule 0 from other, with 4,000 more ports"
check "(h4) whole apply: rule 0's ports changed (one_rule $(one_rule))" [ "$(one_rule)" = None ]
reaches "(h4)" other
write_long "$CLIENT_BLOCK"
apply_json "(h5) rule 0 from client, the same 4,000 ports"
check "(h5) one rule, its end read past the first bytes: $(one_rule)" \
  [ "$(one_rule)" = "spec.ingress[0]" ]
# A 144 KB rule's patch is more than a sixteenth of the file: written whole.
got=$(recorded_text "/run/moat/lab-$L" "$POLICY")
check "(h5) the record holds the file byte for byte ($got)" [ "$got" = "whole same" ]
reaches "(h5)" client

echo "(i) many entries: the whole apply fills the idle slot too; the first change writes its difference there"
# With one CPU the apply does not (the thread would only take turns with it).
if [ "$(nproc)" -lt 2 ]; then
  echo "  skip (i): one CPU"
  finish
fi
# Rule 0 from client on 17,000 ports (34,000 entries, more than the 32,768
# from which a whole apply mirrors its generation into the idle slot), rule
# 1 on port P1.
write_many() {  # write_many P1
  write_policy "$CLIENT_BLOCK"
  python3 - "$POLICY" "$1" <<'PY'
import sys
p, p1 = sys.argv[1], sys.argv[2]
extra = "".join(', {"protocol": "TCP", "port": %d}' % port for port in range(20000, 37000))
t = open(p).read()
t = t.replace('"port": 80}]}', '"port": 80}' + extra + ']}', 1)
t = t.replace('"port": 81}]}', '"port": %s}]}' % p1, 1)
# 200 rules more, each from a /32 of its own: 200 identities, whose names
# (over 4 KiB) the record keeps in a blob.
more = "".join(',\n   {"from": [{"ipBlock": {"cidr": "10.77.%d.%d/32"}}], "ports": [{"protocol": "TCP", "port": 9}]}'
               % (i // 200, 1 + i % 200) for i in range(200))
assert t.count('"port": 81}]}]}}') == 1  # rule 2's end, the list's
t = t.replace('"port": 81}]}]}}', '"port": 81}]}' + more + ']}}', 1)
open(p, "w").write(t)
PY
}
PIN=/sys/fs/bpf/moat/lab-$L
# slot_map SLOT: the id of the slot's policy map; map_entries ID: its entries.
slot_map() {
  bpftool map lookup pinned "$PIN/policy_gens" key "$1" 0 0 0 -j 2>/dev/null |
    python3 -c "import json,sys; v=json.load(sys.stdin); v=v.get('value', v); print(int.from_bytes(bytes(int(b, 16) for b in v), 'little') if isinstance(v, list) else v)" 2>/dev/null
}
map_entries() { bpftool map dump id "$1" -j 2>/dev/null | python3 -c "import json,sys; print(len(json.load(sys.stdin)))" 2>/dev/null; }
write_many 81
apply_json "(i) rule 0 on 17,000 ports, the padding gone"
check "(i) whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
rev=$(field 'r["policy"]["revision"]')
s_on=$((rev % 2)) s_idle=$(((rev + 1) % 2))
m_on=$(slot_map $s_on) m_idle=$(slot_map $s_idle)
n_on=$(map_entries "$m_on") n_idle=$(map_entries "$m_idle")
check "(i) the slot in force holds 32,768 entries and more ($n_on, map $m_on)" is "${n_on:-0} >= 32768"
check "(i) the idle slot holds as many ($n_idle, map $m_idle)" [ "$n_idle" = "$n_on" ]
reaches "(i)" client
write_many 82
apply_json "(i2) rule 1 on port 82"
check "(i2) one rule: $(one_rule)" [ "$(one_rule)" = "spec.ingress[1]" ]
rev2=$(field 'r["policy"]["revision"]')
check "(i2) the idle slot is the one switched to (revision $rev -> $rev2)" is "$rev2 % 2 == $s_idle"
check "(i2) written in place, not made anew (map $(slot_map $s_idle), was $m_idle)" \
  [ "$(slot_map $s_idle)" = "$m_idle" ]
check "(i2) the slot in force before untouched (map $(slot_map $s_on), was $m_on)" \
  [ "$(slot_map $s_on)" = "$m_on" ]
check "(i2) it holds as many entries ($(map_entries "$m_idle"))" [ "$(map_entries "$m_idle")" = "$n_on" ]
reaches "(i2)" client
# The identities' names live in a blob the record names (a change only
# carries the name over): `moat status` still shows them.
ids=$("$MOAT" lab status --lab "$L" --json 2>/dev/null | python3 -c "import json,sys; p=json.load(sys.stdin)['policy']; n=set(p['identities'].values()) if 'identities_blob' not in p else set(); print(len(n), 'cidr 10.89.0.20/32' in n)" 2>/dev/null)
check "(i2) status names the identities (count, client's block among them: $ids)" \
  grep -qE "^2[0-9]{2} True$" <<<"$ids"
blob=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['state']['policy']['identities_blob'])" "/run/moat/lab-$L/record.json" 2>/dev/null)
check "(i2) the record names the identities' blob ($blob), which is there" test -s "/run/moat/lab-$L/blobs/$blob"
# Names for display only: without their blob, status shows none and works.
mv "/run/moat/lab-$L/blobs/$blob" "$TMP/ids.saved"
ids=$("$MOAT" lab status --lab "$L" --json 2>/dev/null | python3 -c "import json,sys; print(len(json.load(sys.stdin)['policy']['identities']))" 2>/dev/null)
check "(i2) without the identities' blob, status shows none (${ids:-failed})" [ "$ids" = 0 ]
mv "$TMP/ids.saved" "/run/moat/lab-$L/blobs/$blob"
write_many 82
echo >>"$POLICY"
apply_json "(i3) the same rules, one byte more"
check "(i3) that takes the whole apply (one_rule $(one_rule))" [ "$(one_rule)" = None ]
check "(i3) and finds the kernel holding its own compile (changed $(changed))" \
  [ "$(changed)" = False ]

finish
