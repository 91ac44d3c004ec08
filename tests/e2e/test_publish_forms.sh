#!/usr/bin/env bash
# Every form of `publish`: bound to 127.0.0.1 (host only) or to the uplink
# address (that address only), UDP, port ranges (equal and shifted), the
# object form. Unpublished ports and container addresses stay closed to the
# outside even when it has a route to the container subnet.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/publish-forms.json
L=$(unique_lab pubform)
UP=198.18.0.1
W=$(ip_of "$F" web pubnet)
P=$(ip_of "$F" peer pubnet)
GW=$(gateway_of "$F" pubnet)
NET=$(subnet_of "$F" pubnet)
route_outside() {  # the outside learns the container subnet (only inside the lab)
  "$MOAT" lab exec --lab "$L" outside -- ip route add "$NET" via $UP
}

echo "baseline: without moat, an outside with a route reaches containers directly"
lab_up "$L" "$F" --no-enforce
check "outside gets a route to $NET via $UP" route_outside
must_pass "baseline outside -> web $W:80 without moat" "$L" outside tcp "$W" 80 web
lab_down "$L"

lab_up "$L" "$F"
echo "127.0.0.1:8081:80 - the host only, at 127.0.0.1 only"
must_pass "host -> 127.0.0.1:8081 reaches web" "$L" host tcp 127.0.0.1 8081 web
must_drop "outside -> $UP:8081" "$L" outside tcp $UP 8081
must_drop "host -> $UP:8081" "$L" host tcp $UP 8081
must_drop "host -> gateway $GW:8081" "$L" host tcp "$GW" 8081
must_drop "peer -> gateway $GW:8081" "$L" peer tcp "$GW" 8081

echo "$UP:8082:80 - that address only"
must_pass "outside -> $UP:8082 reaches web" "$L" outside tcp $UP 8082 web
must_pass "host -> $UP:8082 reaches web" "$L" host tcp $UP 8082 web
must_drop "host -> 127.0.0.1:8082" "$L" host tcp 127.0.0.1 8082
must_drop "host -> gateway $GW:8082" "$L" host tcp "$GW" 8082

echo "5353:53/udp"
must_pass "outside -> $UP:5353/udp reaches web" "$L" outside udp $UP 5353 web
must_pass "host -> 127.0.0.1:5353/udp reaches web" "$L" host udp 127.0.0.1 5353 web
must_pass "host -> $UP:5353/udp reaches web" "$L" host udp $UP 5353 web
must_drop "outside -> $UP:5353/tcp (only udp is published)" "$L" outside tcp $UP 5353

echo "ranges: 8000-8002:8000-8002 and 9100-9101:8000-8001/tcp"
for p in 8000 8001 8002; do
  must_pass "outside -> $UP:$p reaches web" "$L" outside tcp $UP $p web
  must_pass "host -> 127.0.0.1:$p reaches web" "$L" host tcp 127.0.0.1 $p web
done
must_pass "outside -> $UP:9100 reaches web (:8000)" "$L" outside tcp $UP 9100 web
must_pass "outside -> $UP:9101 reaches web (:8001)" "$L" outside tcp $UP 9101 web
must_drop "outside -> $UP:7999 (below the range)" "$L" outside tcp $UP 7999
must_drop "outside -> $UP:8003 (above the range)" "$L" outside tcp $UP 8003
must_drop "outside -> $UP:9102 (above the range)" "$L" outside tcp $UP 9102

echo "object form {host_port: 8090, container_port: 80}"
must_pass "outside -> $UP:8090 reaches web" "$L" outside tcp $UP 8090 web

echo "unpublished ports and container addresses stay closed"
must_drop "outside -> $UP:6000/tcp (exposed, not published)" "$L" outside tcp $UP 6000
must_drop "outside -> $UP:6000/udp (exposed, not published)" "$L" outside udp $UP 6000
must_drop "host -> 127.0.0.1:6000 (exposed, not published)" "$L" host tcp 127.0.0.1 6000
check "outside gets a route to $NET via $UP" route_outside
for ip in "$W" "$P"; do
  must_drop "outside -> $ip:80 directly" "$L" outside tcp "$ip" 80
  must_drop "outside -> $ip icmp directly" "$L" outside icmp "$ip"
done
must_drop "outside -> web $W:6000 directly" "$L" outside tcp "$W" 6000
must_drop "outside -> web $W:53/udp directly" "$L" outside udp "$W" 53
must_drop "outside -> web $W:8000 directly (a published container port)" "$L" outside tcp "$W" 8000
must_pass "and the published port still works" "$L" outside tcp $UP 8090 web

check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check "no socket listens in the lab host (no proxy)" host_listens_nothing "$L"
down_and_finish "$L"
