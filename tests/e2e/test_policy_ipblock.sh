#!/usr/bin/env bash
# ipBlock peers match containers' (and the host's) addresses (issue 13):
# Kubernetes' network-policy e2e "should allow egress access to server in
# CIDR block" and "should enforce except clause while egress access to
# server in CIDR block" select a pod by its address, and Calico and
# kube-router agree. A lab of its own (tests/e2e/policy/ipblock.json, fixed
# addresses): server 10.89.0.10 and client 10.89.0.20 on networks pods and
# side (10.90.0.10, .20), other 10.89.0.30 on pods only, all in namespace x.
# Each case checks what must pass and what must be dropped, then the whole
# container matrix against a truth table written here (never moat's own
# "expected" column, which is the model under test), then that moat's own
# expectations agree with the kernel all the same. An ipBlock holds
# addresses, not pods: the same pod's address on side is outside a block of
# pods addresses, and the gateway (the host) inside one is matched too.
source "$(dirname "$0")/lib.sh"
P=$E2E_DIR/policy
F=$P/ipblock.json
L=$(unique_lab pipb)
SERVER=10.89.0.10
SERVER_SIDE=10.90.0.10
OTHER=10.89.0.30
GATEWAY=10.89.0.1
# Containers reach each other on the networks they share: other is on pods only.
BASE='not (s.name == "other" and dst.endswith("@side"))'

matrix() {  # matrix DESC TRUTH
  policy_matrix "$1" "$L" "$F" pods "($BASE) and ($2)"
}

# moat's own expectations (`moat lab probe`, what `moat explain` says) agree
# with the kernel, host rows and second attachments included: both must see
# the address a probe really comes from.
agrees() {  # agrees DESC
  if "$MOAT" lab probe --lab "$L" >"$TMP/probe.txt" 2>&1; then
    ok "$1: moat lab probe observes what moat expects"
  else
    bad "$1: moat lab probe observes what moat expects"
    sed 's/^/    /' "$TMP/probe.txt"
  fi
}

# The fixed addresses the policy files name are the lab's.
check "the lab file gives server $SERVER and $SERVER_SIDE" \
  [ "$(ip_of "$F" server pods) $(ip_of "$F" server side)" = "$SERVER $SERVER_SIDE" ]
check "the lab file gives client 10.89.0.20 and other $OTHER" \
  [ "$(ip_of "$F" client pods) $(ip_of "$F" other pods)" = "10.89.0.20 $OTHER" ]

lab_up "$L" "$F"

echo "(a) no policy"
matrix "(a) every container reaches every container on a shared network" True

echo "(b) client's egress only to ipBlock $SERVER/32 (upstream: egress to server in CIDR block)"
policy_apply "$L" "$P/ipblock-egress-to-server.json"
must_pass "(b) client -> server $SERVER:80 tcp (in the block)" "$L" client tcp $SERVER 80 server
must_pass "(b) client -> server $SERVER:80 udp" "$L" client udp $SERVER 80 server
must_pass "(b) client -> server $SERVER icmp" "$L" client icmp $SERVER
must_drop "(b) client -> other $OTHER:80 tcp (outside the block)" "$L" client tcp $OTHER 80
must_drop "(b) client -> server's side address $SERVER_SIDE:80 tcp (outside the block)" \
  "$L" client tcp $SERVER_SIDE 80
must_pass "(b) other -> server $SERVER:80 tcp (other is not selected)" "$L" other tcp $SERVER 80 server
matrix "(b) client reaches server at $SERVER only" 's.name != "client" or dst == "server@pods"'
agrees "(b)"
out=$("$MOAT" explain --lab "$L" client $SERVER 80/tcp 2>&1)
check "(b) explain client -> $SERVER 80/tcp: ALLOWED by the ipBlock rule, kernel agrees" \
  bash -c 'head -1 <<<"$1" | grep -q ": ALLOWED$" &&
    grep -q "egress: *allowed by x/client-egress-to-server-cidr egress\[0\]" <<<"$1" &&
    grep -q "kernel:.*(agrees)" <<<"$1"' _ "$out"
echo "$out" | sed 's/^/    | /'

echo "(c) client's egress to ipBlock 10.89.0.0/24 except $SERVER/32 (upstream: except clause)"
policy_apply "$L" "$P/ipblock-egress-except-server.json"
must_drop "(c) client -> server $SERVER:80 tcp (excepted)" "$L" client tcp $SERVER 80
must_drop "(c) client -> server $SERVER:80 udp (excepted)" "$L" client udp $SERVER 80
must_drop "(c) client -> server $SERVER icmp (excepted)" "$L" client icmp $SERVER
must_pass "(c) client -> other $OTHER:80 tcp (in the block)" "$L" client tcp $OTHER 80 other
must_pass "(c) client -> gateway $GATEWAY icmp (the host's address is in the block)" \
  "$L" client icmp $GATEWAY
must_drop "(c) client -> server's side address $SERVER_SIDE:80 tcp (outside the block)" \
  "$L" client tcp $SERVER_SIDE 80
n=$(drops "$L" policy-default-deny)
check "(c) the drops are counted as policy-default-deny ($n)" [ "$n" -gt 0 ]
matrix "(c) client reaches other, not server" 's.name != "client" or dst == "other@pods"'
agrees "(c)"

echo "(d) server's ingress only from ipBlock 10.89.0.20/32 (client's pods address)"
policy_apply "$L" "$P/ipblock-ingress-from-client.json"
must_pass "(d) client -> server $SERVER:80 tcp (from 10.89.0.20, in the block)" \
  "$L" client tcp $SERVER 80 server
must_pass "(d) client -> server $SERVER icmp" "$L" client icmp $SERVER
must_drop "(d) client -> server $SERVER_SIDE:80 tcp (from 10.90.0.20, outside the block)" \
  "$L" client tcp $SERVER_SIDE 80
must_drop "(d) other -> server $SERVER:80 tcp (outside the block)" "$L" other tcp $SERVER 80
must_drop "(d) host -> server $SERVER:80 tcp (from the gateway, outside the block)" \
  "$L" host tcp $SERVER 80
matrix "(d) only client, from its pods address, reaches server" \
  'd.name != "server" or (s.name == "client" and dst == "server@pods")'
agrees "(d)"

echo "(e) server's ingress from ipBlock 10.89.0.0/24 except 10.89.0.20/32"
policy_apply "$L" "$P/ipblock-ingress-except-client.json"
must_drop "(e) client -> server $SERVER:80 tcp (excepted)" "$L" client tcp $SERVER 80
must_drop "(e) client -> server $SERVER icmp (excepted)" "$L" client icmp $SERVER
must_pass "(e) other -> server $SERVER:80 tcp (in the block)" "$L" other tcp $SERVER 80 server
must_pass "(e) host -> server $SERVER:80 tcp (the gateway $GATEWAY is in the block)" \
  "$L" host tcp $SERVER 80 server
matrix "(e) other reaches server, client does not" 'd.name != "server" or s.name == "other"'
agrees "(e)"

echo "(f) policies deleted"
policy_apply "$L"
must_pass "(f) client -> server $SERVER:80 tcp" "$L" client tcp $SERVER 80 server
matrix "(f) every container reaches every container again" True
down_and_finish "$L"
