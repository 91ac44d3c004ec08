#!/usr/bin/env bash
# Segmentation policies over IPv6 (issue 16): the Kubernetes-style cases of
# test_policy_matrix on the same x/y/z pods, their network dual-stack, each
# cell probed over IPv6 (and the same cell over IPv4 where the two must
# agree). What Kubernetes promises holds per family: a pod selected for a
# direction is default-deny that way, allows add up, replies of allowed
# connections pass (connection tracking over IPv6), and an ipBlock matches
# its own family only: 0.0.0.0/0 is not ::/0.
source "$(dirname "$0")/lib.sh"
P=$E2E_DIR/policy
F=$P/xyz-dual.json
L=$(unique_lab p6)
# The lab's IPAM: ::2, ::3, ... in file order.
XA=fd6d:6f61:88::2 XB=fd6d:6f61:88::3 XC=fd6d:6f61:88::4
YA=fd6d:6f61:88::5 YB=fd6d:6f61:88::6 YC=fd6d:6f61:88::7
ZA=fd6d:6f61:88::8 ZB=fd6d:6f61:88::9
W6=2001:db8:2::53 INTERNET=198.19.0.1
v4() { ip_of "$F" "$1" pods; }
lab_up "$L" "$F"

echo "(a) no policy: pods reach each other and the world over IPv6"
must_pass "(a) x-a -> y-b tcp/80" "$L" x-a tcp $YB 80 y-b
must_pass "(a) y-b -> x-a udp/81" "$L" y-b udp $XA 81 x-a
must_pass "(a) z-a -> x-c icmpv6" "$L" z-a icmp $XC
must_pass "(a) x-a -> the IPv6 internet tcp/81" "$L" x-a tcp $W6 81

echo "(b) default-deny ingress in x"
policy_apply "$L" "$P/b-deny-ingress-x.json"
must_drop "(b) y-a -> x-a tcp/80" "$L" y-a tcp $XA 80
must_drop "(b) y-a -> x-a udp/80" "$L" y-a udp $XA 80
must_drop "(b) y-a -> x-a icmpv6" "$L" y-a icmp $XA
must_drop "(b) x-b -> x-a tcp/80 (same namespace)" "$L" x-b tcp $XA 80
must_drop "(b) y-a -> x-a tcp/80 over IPv4 too" "$L" y-a tcp "$(v4 x-a)" 80
# x's egress is open: its connections' replies come back through x's
# default-deny ingress only as replies (ct6).
must_pass "(b) x-a -> y-a tcp/80: the reply passes" "$L" x-a tcp $YA 80 y-a
must_pass "(b) x-a -> y-a udp/81: the reply passes" "$L" x-a udp $YA 81 y-a
must_pass "(b) x-a -> y-a icmpv6: the echo reply passes" "$L" x-a icmp $YA
must_pass "(b) y-a -> z-a tcp/80 (neither in x)" "$L" y-a tcp $ZA 80 z-a
n=$(drops "$L" policy-default-deny)
check "(b) counted as policy-default-deny ($n)" [ "$n" -gt 0 ]

echo "(c) default-deny ingress and egress in x"
policy_apply "$L" "$P/c-deny-all-x.json"
must_drop "(c) x-a -> y-a tcp/80" "$L" x-a tcp $YA 80
must_drop "(c) x-a -> the IPv6 internet tcp/81" "$L" x-a tcp $W6 81
must_drop "(c) y-a -> x-a tcp/80" "$L" y-a tcp $XA 80
must_pass "(c) y-a -> z-b tcp/80" "$L" y-a tcp $ZB 80 z-b

echo "(d) x/a only from pods pod=b of its own namespace"
policy_apply "$L" "$P/d-xa-from-pod-b.json"
must_pass "(d) x-b -> x-a tcp/80" "$L" x-b tcp $XA 80 x-a
must_pass "(d) x-b -> x-a icmpv6" "$L" x-b icmp $XA
must_drop "(d) y-b -> x-a tcp/80 (another namespace)" "$L" y-b tcp $XA 80
must_drop "(d) x-c -> x-a tcp/80" "$L" x-c tcp $XA 80
must_pass "(d) x-c -> x-b tcp/80 (x-b not selected)" "$L" x-c tcp $XB 80 x-b
# moat explain over IPv6 addresses: the deciding policy, and the loaded
# programs' verdict for the first packet, which must agree.
out=$("$MOAT" explain --lab "$L" $XB $XA 80/tcp 2>&1)
check "(d) explain [$XB] -> [$XA] 80/tcp: ALLOWED, the kernel agrees" \
  bash -c 'head -1 <<<"$1" | grep -q ": ALLOWED$" && grep -q "kernel:.*(agrees)" <<<"$1"' _ "$out"
echo "$out" | sed 's/^/    | /'
out=$("$MOAT" explain --lab "$L" $XC $XA 80/tcp 2>&1)
check "(d) explain [$XC] -> [$XA] 80/tcp: DENIED by default deny, the kernel agrees" \
  bash -c 'head -1 <<<"$1" | grep -q ": DENIED$" && grep -q "default deny" <<<"$1" &&
    grep -q "kernel:.*(agrees)" <<<"$1"' _ "$out"
out=$("$MOAT" explain --lab "$L" --json x-c x-a 80/tcp 2>&1)
check "(d) explain x-c -> x-a over IPv4 by name: DENIED as well" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["allowed"] is False, j' "$out"
# The programs run on an IPv6 first packet as on an IPv4 one: the verdict,
# whether they ran, what they decided, whether that agrees, and each hop.
explain6() {  # explain6 FROM TO PORT -> "FLOW_PROTO ALLOWED RAN PROG_ALLOWED AGREES HOPS"
  "$MOAT" explain --lab "$L" --json "$@" 2>&1 | python3 -c '
import json,sys
e=json.load(sys.stdin); p=e["program"]
hops=",".join(h["program"] + ":" + ("pass" if h["passed"] else "drop(" + h["reason"] + ")")
              for h in p.get("hops", []))
print(e["flow"].split()[-1], e["allowed"], p["ran"], p.get("allowed"), p.get("agrees"), hops)'
}
# Entries explain's first packets would leave: source port 40000, echo id 0x6d74.
ct_explained() {
  "$MOAT" ct list --lab "$L" --json | python3 -c '
import json,sys
print(sum(1 for r in json.load(sys.stdin) if r.get("family") == "ipv6" and
          (r["from"].endswith("]:40000") or r.get("echo_id") == 0x6d74)))'
}
d0=$(drops "$L" policy-default-deny)
got=$(explain6 $XB $XA 80/tcp)
check "(d) explain program [$XB] -> [$XA] 80/tcp: passes both veths, agrees ($got)" \
  [ "$got" = "80/tcp True True True True from_container:pass,to_container:pass" ]
got=$(explain6 $XC $XA 80/tcp)
check "(d) explain program [$XC] -> [$XA] 80/tcp: x-c's veth drops it as policy-default-deny ($got)" \
  [ "$got" = "80/tcp False True False True from_container:drop(policy-default-deny)" ]
# icmp on an IPv6 flow is ICMPv6, for the model, the maps and the program.
got=$(explain6 x-b $XA icmp)
check "(d) explain program x-b -> [$XA] icmp: an ICMPv6 echo passes, agrees ($got)" \
  [ "$got" = "icmpv6 True True True True from_container:pass,to_container:pass" ]
got=$(explain6 x-c $XA icmp)
check "(d) explain program x-c -> [$XA] icmp: the ICMPv6 echo is policy-default-deny ($got)" \
  [ "$got" = "icmpv6 False True False True from_container:drop(policy-default-deny)" ]
got=$(explain6 o-a $XA 80/tcp)
check "(d) explain program o-a (network other) -> [$XA]: network-isolation at o-a's veth ($got)" \
  [ "$got" = "80/tcp False True False True from_container:drop(network-isolation)" ]
got=$(explain6 x-a $W6 81/tcp)
check "(d) explain program x-a -> [$W6] 81/tcp: x-a's veth, then the uplink's to_world ($got)" \
  [ "$got" = "81/tcp True True True True from_container:pass,to_world:pass" ]
got=$(explain6 $W6 $XA 80/tcp)
check "(d) explain program [$W6] -> [$XA] 80/tcp: the uplink's from_world drops it: not-published ($got)" \
  [ "$got" = "80/tcp False True False True from_world:drop(not-published)" ]
out=$("$MOAT" explain --lab "$L" x-a fe80::1 80/tcp 2>&1)
check "(d) explain x-a -> [fe80::1]: not run, the link-local side says why" \
  grep -q "program: *not run: fe80::1 is link-scope (link-local)" <<<"$out"
check "(d) the IPv6 runs leave no connection-tracking entry ($(ct_explained))" \
  [ "$(ct_explained)" = 0 ]
check "(d) ... and count no drop ($d0 -> $(drops "$L" policy-default-deny))" \
  [ "$(drops "$L" policy-default-deny)" = "$d0" ]
# ICMP over IPv6 is what the kernel judges: an ICMPv6 echo (58), which a
# rule's ICMP covers (README). explain's verdict, its program run and a
# real ping must say so.
policy_apply "$L" "$P/xa-icmp-only.json"
got=$(explain6 y-a x-a icmp)
check "(d') explain program y-a -> x-a icmp over IPv4: allowed by the ICMP rule ($got)" \
  [ "$got" = "icmp True True True True from_container:pass,to_container:pass" ]
must_pass "(d') y-a -> x-a icmp over IPv4 really passes" "$L" y-a icmp "$(v4 x-a)"
got=$(explain6 y-a $XA icmp)
check "(d') explain program y-a -> [$XA] icmp: an ICMPv6 echo, allowed by the ICMP rule ($got)" \
  [ "$got" = "icmpv6 True True True True from_container:pass,to_container:pass" ]
must_pass "(d') y-a -> x-a icmpv6 really passes" "$L" y-a icmp $XA
got=$(explain6 y-a $XA 80/tcp)
check "(d') ... and TCP to it stays denied ($got)" \
  [ "$got" = "80/tcp False True False True from_container:drop(policy-default-deny)" ]
must_drop "(d') y-a -> x-a tcp/80 over IPv6 is really dropped" "$L" y-a tcp $XA 80

echo "(e) x/a only from namespace ns=y"
policy_apply "$L" "$P/e-xa-from-ns-y.json"
must_pass "(e) y-c -> x-a udp/80" "$L" y-c udp $XA 80 x-a
must_drop "(e) z-a -> x-a udp/80" "$L" z-a udp $XA 80
must_drop "(e) x-b -> x-a tcp/80" "$L" x-b tcp $XA 80
must_pass "(e) y-c -> x-a over IPv4 too" "$L" y-c tcp "$(v4 x-a)" 80 x-a

echo "(v6) IPv6 ipBlocks: except, ports, and 0.0.0.0/0 is not ::/0"
policy_apply "$L" "$P/v6-xa-ipblock.json"
must_pass "(v6) y-a -> x-a tcp/80: inside fd6d:6f61:88::/64" "$L" y-a tcp $XA 80 x-a
must_drop "(v6) z-a -> x-a tcp/80: its /128 is the except" "$L" z-a tcp $XA 80
must_drop "(v6) y-a -> x-a tcp/81: the block's port is 80" "$L" y-a tcp $XA 81
must_drop "(v6) y-a -> x-a udp/80" "$L" y-a udp $XA 80
must_pass "(v6) x-a -> the IPv4 internet (0.0.0.0/0)" "$L" x-a tcp $INTERNET 80
must_drop "(v6) x-a -> the IPv6 internet tcp/81: 0.0.0.0/0 is IPv4 only" "$L" x-a tcp $W6 81
must_pass "(v6) x-a -> the IPv6 internet udp/81: 2001:db8:2::/48" "$L" x-a udp $W6 81
must_pass "(v6) x-a -> y-a tcp/80 over IPv4: 0.0.0.0/0 holds it" "$L" x-a tcp "$(v4 y-a)" 80 y-a

echo "no policy again"
policy_apply "$L" "$P/n-allow-all-x.json"
must_pass "x-a -> y-a tcp/80 over IPv6" "$L" x-a tcp $YA 80 y-a
must_pass "z-a -> x-a tcp/80 over IPv6" "$L" z-a tcp $XA 80 x-a

echo "(fam) an ipBlock matches the packet's own address, one family at a time"
# x/a admits y-b's address of one family only and dials z-b's of one
# family only: a /32 says nothing of the pod's IPv6 traffic, a /128 nothing
# of its IPv4 traffic (Kubernetes, Calico and Cilium alike).
fam_policy() {  # fam_policy FILE FROM_CIDR TO_CIDR
  cat >"$1" <<EOF
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
 "metadata": {"name": "xa-one-family", "namespace": "x"},
 "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
          "ingress": [{"from": [{"ipBlock": {"cidr": "$2"}}]}],
          "egress": [{"to": [{"ipBlock": {"cidr": "$3"}}]}]}}
EOF
}
# fam_explain DESC VERDICT FROM TO PORT: `moat explain` gives VERDICT and the
# model, the compiled entries and the loaded maps (and programs) agree.
fam_explain() {
  local desc=$1 want=$2 out
  shift 2
  out=$("$MOAT" explain --lab "$L" "$@" 2>&1)
  check "$desc" bash -c 'head -1 <<<"$1" | grep -q ": $2\$" &&
    grep -q "kernel:.*(agrees)" <<<"$1" && ! grep -q DISAGREES <<<"$1"' _ "$out" "$want"
  echo "$out" | sed 's/^/    | /'
}
XA4=$(v4 x-a) YB4=$(v4 y-b) ZB4=$(v4 z-b)
fam_policy "$TMP/fam-v4.json" "$YB4/32" "$ZB4/32"
policy_apply "$L" "$TMP/fam-v4.json"
must_pass "(fam) y-b -> x-a tcp/80 over IPv4: $YB4/32 holds it" "$L" y-b tcp "$XA4" 80 x-a
must_drop "(fam) y-b -> x-a tcp/80 over IPv6: $YB4/32 is IPv4" "$L" y-b tcp $XA 80
must_pass "(fam) x-a -> z-b tcp/80 over IPv4: $ZB4/32 holds it" "$L" x-a tcp "$ZB4" 80 z-b
must_drop "(fam) x-a -> z-b tcp/80 over IPv6: $ZB4/32 is IPv4" "$L" x-a tcp $ZB 80
fam_explain "(fam) explain $YB4 -> $XA4 80/tcp: ALLOWED, all agree" ALLOWED "$YB4" "$XA4" 80/tcp
fam_explain "(fam) explain [$YB] -> [$XA] 80/tcp: DENIED, all agree" DENIED $YB $XA 80/tcp
fam_explain "(fam) explain [$XA] -> [$ZB] 80/tcp: DENIED, all agree" DENIED $XA $ZB 80/tcp
fam_policy "$TMP/fam-v6.json" "$YB/128" "$ZB/128"
policy_apply "$L" "$TMP/fam-v6.json"
must_pass "(fam) y-b -> x-a tcp/80 over IPv6: $YB/128 holds it" "$L" y-b tcp $XA 80 x-a
must_drop "(fam) y-b -> x-a tcp/80 over IPv4: $YB/128 is IPv6" "$L" y-b tcp "$XA4" 80
must_pass "(fam) x-a -> z-b tcp/80 over IPv6: $ZB/128 holds it" "$L" x-a tcp $ZB 80 z-b
must_drop "(fam) x-a -> z-b tcp/80 over IPv4: $ZB/128 is IPv6" "$L" x-a tcp "$ZB4" 80
fam_explain "(fam) explain [$YB] -> [$XA] 80/tcp: ALLOWED, all agree" ALLOWED $YB $XA 80/tcp
fam_explain "(fam) explain $YB4 -> $XA4 80/tcp: DENIED, all agree" DENIED "$YB4" "$XA4" 80/tcp
fam_explain "(fam) explain $XA4 -> $ZB4 80/tcp: DENIED, all agree" DENIED "$XA4" "$ZB4" 80/tcp
finish
