#!/usr/bin/env bash
# Segmentation policies (issue 4) the way Kubernetes' network-policy e2e
# suite checks them: namespaces x, y, z with pods a, b, c each (x-a ... z-c,
# one network), every pod probed against every other one on 80 and 81 over
# TCP and UDP and with ICMP, after each policy. The observed matrix is
# compared with a truth table written here (never with moat's own
# "expected" column: that is the model under test). Truth tables are Python
# expressions over s / d (source / destination pod: .name .ns .pod), proto
# and port, True = must pass (see policy_matrix in lib.sh).
#
# Kubernetes semantics: a pod selected by some policy for a direction is
# default-deny in that direction, the allows of all policies add up, replies
# of allowed connections always pass. Policies are real networking.k8s.io/v1
# NetworkPolicy JSON (single objects, Lists, arrays) in tests/e2e/policy/;
# only (m) needs a moat extension, an "action": "deny" rule (beats every
# allow), written in moat's own policy format as moat requires. Egress
# ipBlocks are checked against the lab's "internet" server 198.19.0.1
# (tcp/udp 80, answers with the client address) and the outside end of the
# uplink, 198.18.0.2; (k2) checks that a block covering the pods' subnet
# matches every pod, as in Kubernetes: ipBlocks match by address, pods'
# included (more in test_policy_ipblock.sh).
source "$(dirname "$0")/lib.sh"
P=$E2E_DIR/policy
F=$P/xyz.json
L=$(unique_lab pmx)
NET=pods
XA=$(ip_of "$F" x-a $NET)
INTERNET=198.19.0.1
UPLINK_OUT=198.18.0.2

matrix() {  # matrix DESC TRUTH
  policy_matrix "$1" "$L" "$F" pods "$2"
}

lab_up "$L" "$F"

echo "(a) no policy: every pod reaches every pod"
matrix "(a) no policy" True
must_pass "(a) x-a -> internet $INTERNET:80 tcp" "$L" x-a tcp $INTERNET 80
must_pass "(a) x-a -> uplink $UPLINK_OUT icmp" "$L" x-a icmp $UPLINK_OUT

echo "(b) default-deny ingress in x"
policy_apply "$L" "$P/b-deny-ingress-x.json"
matrix "(b) nothing reaches x, x reaches everything else" 'd.ns != "x"'
n=$(drops "$L" policy-default-deny)
check "(b) the drops are counted as policy-default-deny ($n)" [ "$n" -gt 0 ]

echo "(c) default-deny ingress and egress in x"
policy_apply "$L" "$P/c-deny-all-x.json"
matrix "(c) nothing reaches x, x reaches nothing" 's.ns != "x" and d.ns != "x"'
must_drop "(c) x-a -> internet tcp (egress denied)" "$L" x-a tcp $INTERNET 80

echo "(d) x/a only from pods pod=b of its own namespace (podSelector alone)"
policy_apply "$L" "$P/d-xa-from-pod-b.json"
matrix "(d) only x-b reaches x-a (not y-b, z-b)" 'd.name != "x-a" or s.name == "x-b"'

echo "(e) x/a only from namespace ns=y"
policy_apply "$L" "$P/e-xa-from-ns-y.json"
matrix "(e) only y-* reach x-a" 'd.name != "x-a" or s.ns == "y"'

echo "(f) x/a from namespaceSelector ns=y AND podSelector pod=c in one peer"
policy_apply "$L" "$P/f-xa-from-ns-y-and-pod-c.json"
matrix "(f) only y-c reaches x-a" 'd.name != "x-a" or s.name == "y-c"'

echo "(g) x/a from two peers: namespace ns=y OR pod=c (of x)"
policy_apply "$L" "$P/g-xa-from-ns-y-or-pod-c.json"
matrix "(g) y-* and x-c reach x-a (z-c does not)" \
  'd.name != "x-a" or s.ns == "y" or (s.ns == "x" and s.pod == "c")'

echo "(h) x/a only on TCP 81, from anywhere"
policy_apply "$L" "$P/h-xa-tcp-81.json"
matrix "(h) x-a is reached on tcp/81 only" 'd.name != "x-a" or (proto == "tcp" and port == 81)'

echo "(i) port ranges with endPort: x/a TCP 80-81, x/b UDP 81-100"
policy_apply "$L" "$P/i-port-ranges.json"
matrix "(i) x-a on tcp/80 and tcp/81, x-b on udp/81 only" \
  '(d.name != "x-a" or (proto == "tcp" and 80 <= port <= 81)) and
   (d.name != "x-b" or (proto == "udp" and port == 81))'

echo "(j) protocol only: x/a on UDP, any port"
policy_apply "$L" "$P/j-xa-udp-any-port.json"
matrix "(j) x-a is reached over udp only (80 and 81)" 'd.name != "x-a" or proto == "udp"'

echo "(k) egress of x/a only to ipBlock 198.19.0.0/16 (the internet server)"
policy_apply "$L" "$P/k-xa-egress-internet.json"
matrix "(k) x-a reaches no pod, every pod still reaches x-a (replies pass)" 's.name != "x-a"'
must_pass "(k) x-a -> internet $INTERNET:80 tcp" "$L" x-a tcp $INTERNET 80
must_pass "(k) x-a -> internet $INTERNET:80 udp" "$L" x-a udp $INTERNET 80
must_pass "(k) x-a -> internet $INTERNET icmp" "$L" x-a icmp $INTERNET
must_drop "(k) x-a -> uplink $UPLINK_OUT icmp (outside the block)" "$L" x-a icmp $UPLINK_OUT
must_pass "(k) x-b -> internet $INTERNET:80 tcp (not selected)" "$L" x-b tcp $INTERNET 80

echo "(k2) egress of x/a only to ipBlock 10.88.0.0/16, the pods' own subnet:"
echo "     ipBlocks match pods by address, so every pod is allowed, nothing outside"
policy_apply "$L" "$P/k2-xa-egress-pod-subnet.json"
matrix "(k2) x-a reaches every pod: their addresses are in the block" True
must_drop "(k2) x-a -> internet tcp (outside the block)" "$L" x-a tcp $INTERNET 80

echo "(l) egress of x/a to 198.18.0.0/15 except 198.19.0.0/16"
policy_apply "$L" "$P/l-xa-egress-except.json"
matrix "(l) x-a reaches no pod" 's.name != "x-a"'
must_drop "(l) x-a -> internet $INTERNET:80 tcp (excepted)" "$L" x-a tcp $INTERNET 80
must_drop "(l) x-a -> internet $INTERNET:80 udp (excepted)" "$L" x-a udp $INTERNET 80
must_drop "(l) x-a -> internet $INTERNET icmp (excepted)" "$L" x-a icmp $INTERNET
must_pass "(l) x-a -> uplink $UPLINK_OUT icmp (in the block)" "$L" x-a icmp $UPLINK_OUT
must_pass "(l) y-a -> internet $INTERNET:80 tcp (not selected)" "$L" y-a tcp $INTERNET 80

echo "(m) explicit deny (moat extension) beats an allow: allow all into x, deny pods pod=b"
policy_apply "$L" "$P/m-deny-pod-b.json"
matrix "(m) everything reaches x except x-b, y-b, z-b" 'd.ns != "x" or s.pod != "b"'
n=$(drops "$L" policy-deny)
check "(m) the drops are counted as policy-deny, the explicit deny ($n)" [ "$n" -gt 0 ]

echo "(n) allow-all -> deny-all -> deleted; an established connection is cut when denied"
policy_apply "$L" "$P/n-allow-all-x.json"
matrix "(n1) allow-all in x: everything passes" True
# A server of our own on x-a: the lab's listeners answer one line and close.
serve "$L" x-a tcp 8080 TCP-LISTEN:8080,reuseaddr,fork 'SYSTEM:while read -r _; do echo x-a; done'
conn_open in "$L" y-a "$XA" 8080          # y-a -> x-a: ingress of x
conn_open out "$L" x-a "$INTERNET" 80     # x-a -> internet: egress of x
ok_in=1 ok_out=1
for i in 1 2 3; do conn_ask in 2 && [ "$REPLY_TEXT" = x-a ] && break; done || ok_in=0
check "(n1) long-lived y-a -> x-a:8080 answers (\"$REPLY_TEXT\")" [ "$ok_in" = 1 ]
for i in 1 2 3; do conn_ask out 2 && [ -n "$REPLY_TEXT" ] && break; done || ok_out=0
check "(n1) long-lived x-a -> internet:80 answers (\"$REPLY_TEXT\")" [ "$ok_out" = 1 ]
policy_apply "$L" "$P/c-deny-all-x.json"
if conn_ask in 3; then bad "(n2) established y-a -> x-a:8080 still answered (\"$REPLY_TEXT\")"
else ok "(n2) the established y-a -> x-a:8080 connection gets no answer any more (3 s)"; fi
if conn_ask out 3; then bad "(n2) established x-a -> internet:80 still answered (\"$REPLY_TEXT\")"
else ok "(n2) the established x-a -> internet:80 connection gets no answer any more (3 s)"; fi
n=$(drops "$L" policy-revoked)
check "(n2) the cut connections are counted as policy-revoked ($n)" [ "$n" -gt 0 ]
matrix "(n2) deny-all in x: nothing reaches x, x reaches nothing" 's.ns != "x" and d.ns != "x"'
conn_close in
conn_close out
policy_apply "$L"
matrix "(n3) policies deleted: everything passes again" True
conn_open in2 "$L" y-a "$XA" 8080
ok_in=1
for i in 1 2 3; do conn_ask in2 2 && [ "$REPLY_TEXT" = x-a ] && break; done || ok_in=0
check "(n3) a new y-a -> x-a:8080 connection answers" [ "$ok_in" = 1 ]
conn_close in2
must_pass "(n3) x-a -> internet tcp" "$L" x-a tcp $INTERNET 80

down_and_finish "$L"
