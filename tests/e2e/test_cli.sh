#!/usr/bin/env bash
# The command line: a command builds only its own family's tree (cli/main.cpp,
# kFamilies: 0.5 ms of every command, README stop 59), so each command listed
# by `moat --help` (which builds them all) must still be found, run its own
# --help and refuse what it does not take, exactly as with every family
# built. Needs no namespace: only --help, --version and refusals are run.
source "$(dirname "$0")/lib.sh"

# The top-level commands, as `moat --help` lists them.
mapfile -t COMMANDS < <("$MOAT" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && /^  [a-z]/ {print $1}')
check "moat --help lists the commands (${COMMANDS[*]})" test "${#COMMANDS[@]}" -ge 14
for want in validate apply status down fastpath ct lab explain policy stats flows top serve docker; do
  check "moat --help lists $want" bash -c "printf '%s\n' ${COMMANDS[*]} | grep -qx '$want'"
done

for c in "${COMMANDS[@]}"; do
  OUT=$("$MOAT" "$c" --help 2>&1)
  RC=$?
  check "moat $c --help exits 0" test "$RC" -eq 0
  check "moat $c --help shows its usage" grep -q "^Usage: moat $c " <<<"$OUT"
  # An option no command has: refused by the command (a command of
  # subcommands asks for one of them first, as a name no family adds does).
  grep -q '^Subcommands:' <<<"$OUT" && continue
  OUT=$("$MOAT" "$c" --no-such-option 2>&1)
  RC=$?
  check "moat $c --no-such-option is refused (rc $RC)" test "$RC" -ne 0
  check "moat $c --no-such-option is refused by the command, not as an unknown command" \
    bash -c "! grep -q 'A subcommand is required' <<<'$OUT'"
done

# The subcommands of the families with more than one level.
for family in lab ct policy; do
  mapfile -t SUBS < <("$MOAT" "$family" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && /^  [a-z]/ {print $1}')
  check "moat $family --help lists subcommands (${SUBS[*]})" test "${#SUBS[@]}" -ge 1
  for s in "${SUBS[@]}"; do
    check "moat $family $s --help exits 0 with its usage" \
      bash -c "'$MOAT' $family $s --help 2>&1 | grep -q '^Usage: moat $family $s '"
  done
done

# What no family adds, and no command at all, every family judges.
OUT=$("$MOAT" no-such-command 2>&1)
RC=$?
check "an unknown command is refused (rc $RC)" test "$RC" -ne 0
check "moat --version" bash -c "'$MOAT' --version | grep -qx 'moat [0-9.]*'"
OUT=$("$MOAT" 2>&1)
check "no command: one is required" grep -q "A subcommand is required" <<<"$OUT"

finish
