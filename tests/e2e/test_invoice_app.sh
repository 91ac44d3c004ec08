#!/usr/bin/env bash
# Seed 000 Beispiel 2: rechnung :5000, sicherheit :6000, datenbank :7000 on
# one network. They reach each other on their ports; a container of another
# network reaches none of them.
source "$(dirname "$0")/lib.sh"
F=$TMP/invoice-plus-stranger.json
python3 - "$REPO/policies/invoice-app.json" "$F" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["networks"].append({"name": "fremd", "subnet": "172.30.0.0/16"})
d["containers"].append({"name": "fremder", "networks": ["fremd"], "expose": ["9000/tcp"]})
json.dump(d, open(sys.argv[2], "w"))
PY
L=$(unique_lab inv)
R=$(ip_of "$F" rechnung rechnungswesen)
S=$(ip_of "$F" sicherheit rechnungswesen)
D=$(ip_of "$F" datenbank rechnungswesen)

lab_up "$L" "$F"
must_pass "rechnung -> sicherheit:6000" "$L" rechnung tcp "$S" 6000 sicherheit
must_pass "rechnung -> datenbank:7000" "$L" rechnung tcp "$D" 7000 datenbank
must_pass "sicherheit -> rechnung:5000" "$L" sicherheit tcp "$R" 5000 rechnung
must_pass "rechnung -> datenbank icmp" "$L" rechnung icmp "$D"
must_pass "host -> rechnung:5000 via the gateway" "$L" host tcp "$R" 5000 rechnung
must_drop "fremder -> rechnung:5000" "$L" fremder tcp "$R" 5000
must_drop "fremder -> datenbank:7000" "$L" fremder tcp "$D" 7000
must_drop "fremder -> sicherheit icmp" "$L" fremder icmp "$S"
must_drop "datenbank -> fremder:9000" "$L" datenbank tcp "$(ip_of "$F" fremder fremd)" 9000
check_probe_matrix "$L"
down_and_finish "$L"
