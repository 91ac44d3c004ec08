#!/usr/bin/env bash
# Two labs of the same file at once (same addresses, same container names):
# each has its own namespaces, pins and state, and taking one down leaves the
# other enforcing.
source "$(dirname "$0")/lib.sh"
F=$REPO/policies/segmentation.json
L1=$(unique_lab twoa)
L2=$(unique_lab twob)
B=$(ip_of "$F" container-b mein-netzwerk)
C=$(ip_of "$F" container-c anderes-netzwerk)
lab_up "$L1" "$F"
lab_up "$L2" "$F"
check "two labs listed" [ "$("$MOAT" lab list | grep -c -e "^$L1" -e "^$L2")" -eq 2 ]
check "each lab has its own pins" [ -d "/sys/fs/bpf/moat/lab-$L1" ] 
check "each lab has its own pins" [ -d "/sys/fs/bpf/moat/lab-$L2" ]
for l in "$L1" "$L2"; do
  must_pass "$l: a -> b" "$l" container-a tcp "$B" 80 container-b
  must_drop "$l: a -> c" "$l" container-a tcp "$C" 80
done
out=$("$MOAT" lab exec container-a -- true 2>&1)
check "lab exec without --lab refuses to guess between two labs" grep -q -- "--lab" <<<"$out"
lab_down "$L1"
check "first lab gone" no_residue "$L1"
must_pass "second lab still works: a -> b" "$L2" container-a tcp "$B" 80 container-b
must_drop "second lab still enforces: a -> c" "$L2" container-a tcp "$C" 80
lab_down "$L2"
check "second lab gone" no_residue "$L2"
finish
