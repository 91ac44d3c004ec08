#!/usr/bin/env bash
# Port publishing, seeds 000 (invoice app) and 001: a published port is
# reachable from the outside at the lab host's uplink address and from the
# host itself at 127.0.0.1, localhost, the uplink address and every gateway;
# from containers of other (isolated) networks through host addresses only.
# Unpublished ports reach nothing. No iptables rule, no proxy process.
source "$(dirname "$0")/lib.sh"
UP=198.18.0.1  # the lab host's uplink address

echo "seed 000: invoice app, only rechnung:5000 published"
F=$REPO/policies/invoice-app.json
L=$(unique_lab pubinv)
R=$(ip_of "$F" rechnung rechnungswesen)
S=$(ip_of "$F" sicherheit rechnungswesen)
D=$(ip_of "$F" datenbank rechnungswesen)
GW=$(gateway_of "$F" rechnungswesen)
lab_up "$L" "$F"
must_pass "outside -> $UP:5000 reaches rechnung" "$L" outside tcp $UP 5000 rechnung
must_drop "outside -> $UP:6000 (sicherheit, not published)" "$L" outside tcp $UP 6000
must_drop "outside -> $UP:7000 (datenbank, not published)" "$L" outside tcp $UP 7000
for ip in 127.0.0.1 localhost $UP "$GW"; do
  must_pass "host -> $ip:5000 reaches rechnung" "$L" host tcp "$ip" 5000 rechnung
  must_drop "host -> $ip:6000 reaches nothing" "$L" host tcp "$ip" 6000
  must_drop "host -> $ip:7000 reaches nothing" "$L" host tcp "$ip" 7000
done
must_pass "rechnung -> sicherheit:6000 (container to container)" "$L" rechnung tcp "$S" 6000 sicherheit
must_pass "rechnung -> datenbank:7000 (container to container)" "$L" rechnung tcp "$D" 7000 datenbank
must_pass "sicherheit -> rechnung:5000 (container to container)" "$L" sicherheit tcp "$R" 5000 rechnung
check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check "no socket listens in the lab host (no proxy)" host_listens_nothing "$L"
check_probe_matrix "$L"
lab_down "$L"
check "lab down leaves no namespace, pin, state or hosts file" no_residue "$L"

echo "seed 001: container-a on network-a publishes 8080:80; container-b on network-b"
F=$E2E_DIR/publish-seed-001.json
L=$(unique_lab pub001)
A=$(ip_of "$F" container-a network-a)
B=$(ip_of "$F" container-b network-b)
GA=$(gateway_of "$F" network-a)
GB=$(gateway_of "$F" network-b)
lab_up "$L" "$F"
must_pass "outside -> $UP:8080 reaches container-a" "$L" outside tcp $UP 8080 container-a
must_pass "host -> localhost:8080 reaches container-a" "$L" host tcp localhost 8080 container-a
must_pass "host -> 127.0.0.1:8080 reaches container-a" "$L" host tcp 127.0.0.1 8080 container-a
must_drop "outside -> $UP:80 (the container port is not published as such)" "$L" outside tcp $UP 80
must_pass "container-b -> network-a gateway $GA:8080 reaches container-a" "$L" container-b tcp "$GA" 8080 container-a
must_pass "container-b -> network-b gateway $GB:8080 reaches container-a" "$L" container-b tcp "$GB" 8080 container-a
must_pass "container-b -> uplink address $UP:8080 reaches container-a" "$L" container-b tcp $UP 8080 container-a
must_drop "container-b -> container-a $A:80 directly (isolation)" "$L" container-b tcp "$A" 80
must_drop "container-b -> container-a icmp (isolation)" "$L" container-b icmp "$A"
must_drop "container-a -> container-b $B:80 (isolation)" "$L" container-a tcp "$B" 80
must_pass "hairpin: container-a -> its gateway $GA:8080 reaches itself" "$L" container-a tcp "$GA" 8080 container-a
must_pass "hairpin: container-a -> $UP:8080 reaches itself" "$L" container-a tcp $UP 8080 container-a
n=$(drops "$L" network-isolation)
check "isolation drops are still counted ($n)" [ "$n" -gt 0 ]
check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check "no socket listens in the lab host (no proxy)" host_listens_nothing "$L"
lab_down "$L"
check "lab down leaves no namespace, pin, state or hosts file" no_residue "$L"

echo "seed 001 as in policies/multi-network.json: the published container-a is on both networks"
F=$REPO/policies/multi-network.json
L=$(unique_lab pubmh)
GA=$(gateway_of "$F" network-a)
GB=$(gateway_of "$F" network-b)
lab_up "$L" "$F"
must_pass "outside -> $UP:8080 reaches container-a" "$L" outside tcp $UP 8080 container-a
must_pass "host -> 127.0.0.1:8080 reaches container-a" "$L" host tcp 127.0.0.1 8080 container-a
for src in container-b container-c; do
  for gw in "$GA" "$GB"; do
    must_pass "$src -> gateway $gw:8080 reaches container-a" "$L" $src tcp "$gw" 8080 container-a
  done
done
must_pass "hairpin: container-a -> gateway $GB:8080 reaches itself" "$L" container-a tcp "$GB" 8080 container-a
down_and_finish "$L"
