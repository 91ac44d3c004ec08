#!/usr/bin/env bash
# Seed 001 (`docker network connect`): container-a on network-a and
# network-b reaches the members of both; container-b (network-b) and
# container-c (network-a) stay isolated from each other, and container-b
# cannot use container-a's network-a address.
source "$(dirname "$0")/lib.sh"
F=$REPO/policies/multi-network.json
L=$(unique_lab multi)
A1=$(ip_of "$F" container-a network-a)
A2=$(ip_of "$F" container-a network-b)
B=$(ip_of "$F" container-b network-b)
C=$(ip_of "$F" container-c network-a)

lab_up "$L" "$F"
must_pass "a -> b over network-b" "$L" container-a tcp "$B" 80 container-b
must_pass "a -> c over network-a" "$L" container-a tcp "$C" 80 container-c
must_pass "b -> a at its network-b address" "$L" container-b tcp "$A2" 80 container-a
must_pass "c -> a at its network-a address" "$L" container-c tcp "$A1" 80 container-a
must_pass "b -> a icmp (network-b)" "$L" container-b icmp "$A2"
must_drop "b -> a at its network-a address" "$L" container-b tcp "$A1" 80
must_drop "b -> a icmp at its network-a address" "$L" container-b icmp "$A1"
must_drop "c -> a at its network-b address" "$L" container-c tcp "$A2" 80
must_drop "b -> c" "$L" container-b tcp "$C" 80
must_drop "c -> b" "$L" container-c tcp "$B" 80
must_drop "c -> b icmp" "$L" container-c icmp "$B"

out=$(echo probe | "$MOAT" lab exec --lab "$L" container-b -- nc -w1 container-a 80 2>/dev/null)
check "b resolves container-a to its network-b address and reaches it" [ "$out" = container-a ]
check_probe_matrix "$L"
down_and_finish "$L"
