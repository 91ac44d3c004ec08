#!/usr/bin/env bash
# Seed 000 "Netzwerksicherheit": A, B on mein-netzwerk; C, D on
# anderes-netzwerk. Same network talks, different networks never do.
source "$(dirname "$0")/lib.sh"
F=$REPO/policies/segmentation.json
L=$(unique_lab seg)
A=$(ip_of "$F" container-a mein-netzwerk)
B=$(ip_of "$F" container-b mein-netzwerk)
C=$(ip_of "$F" container-c anderes-netzwerk)
D=$(ip_of "$F" container-d anderes-netzwerk)

echo "baseline: the same lab without moat routes between networks, so the drops below are moat's"
lab_up "$L" "$F" --no-enforce
must_pass "baseline a -> c tcp without moat" "$L" container-a tcp "$C" 80 container-c
lab_down "$L"

lab_up "$L" "$F"
for proto in tcp udp; do
  must_pass "a -> b $proto" "$L" container-a $proto "$B" 80 container-b
  must_pass "b -> a $proto" "$L" container-b $proto "$A" 80 container-a
  must_pass "c -> d $proto" "$L" container-c $proto "$D" 80 container-d
  must_pass "d -> c $proto" "$L" container-d $proto "$C" 80 container-c
  must_drop "a -> c $proto" "$L" container-a $proto "$C" 80
  must_drop "c -> a $proto" "$L" container-c $proto "$A" 80
  must_drop "b -> d $proto" "$L" container-b $proto "$D" 80
  must_drop "d -> b $proto" "$L" container-d $proto "$B" 80
done
must_pass "a -> b icmp" "$L" container-a icmp "$B"
must_pass "d -> c icmp" "$L" container-d icmp "$C"
must_drop "a -> d icmp" "$L" container-a icmp "$D"
must_drop "c -> b icmp" "$L" container-c icmp "$B"
must_pass "host -> a (gateway side)" "$L" host tcp "$A" 80 container-a
must_pass "host -> c (gateway side)" "$L" host icmp "$C"

out=$(echo probe | "$MOAT" lab exec --lab "$L" container-a -- nc -w1 container-b 80 2>/dev/null)
check "a resolves container-b by name" [ "$out" = container-b ]
check "c does not resolve container-a (no shared network)" \
  bash -c "! '$MOAT' lab exec --lab '$L' container-c -- getent hosts container-a >/dev/null"

n=$(drops "$L" network-isolation)
check "isolation drops are counted per reason ($n)" [ "$n" -gt 0 ]
check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check_probe_matrix "$L"
down_and_finish "$L"
