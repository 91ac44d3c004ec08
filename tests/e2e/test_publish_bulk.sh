#!/usr/bin/env bash
# Published ports with the test's own services in the container (`lab up
# --no-listeners`): the container sees the client's real address (no source
# NAT on the way in), and 100 MB cross a published port intact both ways.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/publish-own-listeners.json
L=$(unique_lab pubbulk)
UP=198.18.0.1
OUT=198.18.0.2  # the outside's address on the uplink

lab_up "$L" "$F" --no-listeners
check "store reports its peer on 7000/tcp" \
  serve "$L" store tcp 7000 TCP-LISTEN:7000,reuseaddr,fork 'SYSTEM:read -r _; echo "$SOCAT_PEERADDR"'
check "store reports its peer on 7001/udp" \
  serve "$L" store udp 7001 UDP-RECVFROM:7001,fork 'SYSTEM:read -r _; echo "$SOCAT_PEERADDR"'
must_pass "outside -> $UP:9002/tcp: store sees the client's address $OUT" "$L" outside tcp $UP 9002 $OUT
must_pass "outside -> $UP:9003/udp: store sees the client's address $OUT" "$L" outside udp $UP 9003 $OUT
must_pass "host -> 127.0.0.1:9002 reaches store" "$L" host tcp 127.0.0.1 9002

echo "100 MB through published ports"
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
BIG=$TMP/big
head -c 100M /dev/urandom >"$BIG"
WANT=$(sha256sum <"$BIG" | cut -d' ' -f1)
check "store serves the file on 9000 (one copy per connection)" \
  serve "$L" store tcp 9000 -U TCP-LISTEN:9000,reuseaddr,fork "OPEN:$BIG"
download() {
  local i
  for i in 1 2 3; do
    rm -f "$TMP/down"
    timeout 30 "$MOAT" lab exec --lab "$L" outside -- \
      socat -u TCP:$UP:9000,connect-timeout=2 "CREATE:$TMP/down" 2>/dev/null &&
      [ "$(stat -c %s "$TMP/down")" -gt 0 ] && return 0
  done
  return 1
}
t0=$(date +%s.%N)
check "outside downloads from $UP:9000" download
t1=$(date +%s.%N)
got=$(sha256sum "$TMP/down" 2>/dev/null | cut -d' ' -f1)
check "download: sha256 matches ($(stat -c %s "$TMP/down" 2>/dev/null) bytes, $(secs "$t0" "$t1") s)" \
  [ "$got" = "$WANT" ]

check "store receives one upload on 9001" \
  serve "$L" store tcp 9001 -u TCP-LISTEN:9001,reuseaddr "CREATE:$TMP/up"
receiver=$SERVED
upload() {
  local i
  for i in 1 2 3; do
    timeout 30 "$MOAT" lab exec --lab "$L" outside -- \
      socat -u "OPEN:$BIG" TCP:$UP:9001,connect-timeout=2 2>/dev/null && return 0
  done
  return 1
}
t0=$(date +%s.%N)
check "outside uploads to $UP:9001" upload
check "the receiver has written the whole upload and exited" wait_exit "$receiver" 20
t1=$(date +%s.%N)
got=$(sha256sum "$TMP/up" 2>/dev/null | cut -d' ' -f1)
check "upload: sha256 matches ($(stat -c %s "$TMP/up" 2>/dev/null) bytes, $(secs "$t0" "$t1") s)" \
  [ "$got" = "$WANT" ]

check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check "no socket listens in the lab host (no proxy)" host_listens_nothing "$L"
for p in "${SERVERS[@]}"; do stop_server "$p"; done
SERVERS=()
down_and_finish "$L"
