#!/usr/bin/env bash
# The HTTP module (userspace/src/http/transport.h): cpp-httplib and its
# libssl, libcrypto and brotli are not linked into moat, so every other
# command starts without them; `moat docker` and `moat serve` load
# moat-http.so from beside the binary or from ../lib/moat/ (an installed
# bin/moat), and refuse one that is missing, writable by others, owned by
# another user, or not moat's. Needs no namespace: the one command run,
# `moat docker`, is pointed at a socket that does not exist and stops at
# the connect.
# (That the module really speaks HTTP: test_docker_*.sh and test_observe.sh.)
source "$(dirname "$0")/lib.sh"

BIN=$(readlink -f "$MOAT")
MODULE=$(dirname "$BIN")/moat-http.so
[ -f "$MODULE" ] || { bad "no moat-http.so beside $BIN"; finish; }
NOSOCK="$TMP/no-dockerd.sock"

# docker_try DIR_OF_MOAT: runs its `moat docker` against NOSOCK; stdout+stderr in $OUT, rc in $RC.
docker_try() {
  OUT=$(timeout 20 "$1/moat" docker --socket "$NOSOCK" 2>&1)
  RC=$?
}
# failed_saying REGEX: the last docker_try failed with a message matching REGEX.
failed_saying() { [ "$RC" -ne 0 ] && grep -q -- "$1" <<<"$OUT"; }

for lib in libcpp-httplib libssl libcrypto libbrotli; do
  check "moat links no $lib" bash -c "! ldd '$BIN' | grep -q '$lib'"
done
# MOAT_STATIC_LIBS (on by default): the libraries every command needs are
# linked in, so that a process starts without resolving them (README,
# Performance, stop 41). The module itself still loads the shared libstdc++.
for lib in libbpf libelf libz libyaml-cpp libstdc++ libgcc_s; do
  check "moat links $lib statically" bash -c "! ldd '$BIN' | grep -q '$lib\\.so'"
done
check "moat --version does not load the module" \
  bash -c "! LD_DEBUG=libs '$BIN' --version 2>&1 | grep -q 'moat-http.so\|libssl'"

# The build tree: the module beside the binary.
docker_try "$(dirname "$BIN")"
check "beside the binary: moat docker loads the module and reaches the connect ($OUT)" \
  failed_saying "cannot connect to dockerd at $NOSOCK: No such file"
check "moat docker loads moat-http.so and libssl with it" \
  bash -c "LD_DEBUG=libs timeout 20 '$BIN' docker --socket '$NOSOCK' 2>&1 | grep -q 'moat-http.so' &&
           LD_DEBUG=libs timeout 20 '$BIN' docker --socket '$NOSOCK' 2>&1 | grep -q 'libssl'"

# An installed layout: bin/moat and lib/moat/moat-http.so.
mkdir -p "$TMP/inst/bin" "$TMP/inst/lib/moat" "$TMP/bare"
cp "$BIN" "$TMP/inst/bin/moat"
cp "$MODULE" "$TMP/inst/lib/moat/moat-http.so"
chmod 0755 "$TMP/inst/lib/moat/moat-http.so"
docker_try "$TMP/inst/bin"
check "installed (bin/moat, lib/moat/moat-http.so): the module is found ($OUT)" \
  failed_saying "cannot connect to dockerd"

# Refusals, each naming what to do.
cp "$BIN" "$TMP/bare/moat"
docker_try "$TMP/bare"
check "no module: moat docker fails and says where it looked ($OUT)" \
  failed_saying "moat-http.so, which is neither beside $TMP/bare/moat nor in $TMP/bare/../lib/moat/"
check "no module: every other command still works (validate)" \
  bash -c "'$TMP/bare/moat' validate '$REPO/policies/invoice-app.json' >/dev/null"

chmod g+w "$TMP/inst/lib/moat/moat-http.so"
docker_try "$TMP/inst/bin"
check "a group-writable module is refused ($OUT)" \
  failed_saying "refusing to load .*moat-http.so: writable by its group or by others"
chmod 0755 "$TMP/inst/lib/moat/moat-http.so"

# Another user's module, mode 0755: whoever owns it can replace the code a
# root moat runs.
chown 65534 "$TMP/inst/lib/moat/moat-http.so"
docker_try "$TMP/inst/bin"
check "a module owned by another user is refused ($OUT)" \
  failed_saying "refusing to load .*moat-http.so: owned by uid 65534, not by root or the user running moat"
chown 0 "$TMP/inst/lib/moat/moat-http.so"

cp "$(readlink -f /lib/x86_64-linux-gnu/libz.so.1)" "$TMP/bare/moat-http.so"
chmod 0755 "$TMP/bare/moat-http.so"
docker_try "$TMP/bare"
check "a library that is not moat's module is refused ($OUT)" \
  failed_saying "has no moat_http_transport(): not moat's HTTP module"

# A module of another interface: one built from an older transport.h
# answers with its own number. The binary's number is the hash of the
# header it was built from (userspace/CMakeLists.txt), so no edit of the
# interface can forget to change it.
cat > "$TMP/old_module.cpp" <<'CPP'
extern "C" const int* moat_http_transport() {
  static const int old_abi = 1;  // the number kept by hand before it was the hash
  return &old_abi;
}
CPP
g++ -shared -fPIC -o "$TMP/bare/moat-http.so" "$TMP/old_module.cpp"
chmod 0755 "$TMP/bare/moat-http.so"
WANT=$((16#$(sha256sum "$REPO/userspace/src/http/transport.h" | cut -c1-7)))
docker_try "$TMP/bare"
check "a module of another interface is refused, and the binary speaks transport.h's hash $WANT ($OUT)" \
  failed_saying "is from another build of moat (interface 1, this binary speaks $WANT): install the two together"

finish
