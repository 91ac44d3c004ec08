#!/usr/bin/env python3
"""cni_runtime.py - drives CNI plugins as a container runtime does (libcni).

Used by tests/e2e/test_cni_*.sh: the conflist's plugins are run in order for
ADD (each gets the previous one's result as prevResult), in reverse order for
DEL, with the cached result for CHECK and DEL; the environment is CNI_*
variables, the configuration goes on stdin, capabilities the plugin declares
are filled from --port (portMappings) into runtimeConfig. Every result and
every error object is checked against the spec for the conflist's version;
a result that breaks it is reported on stderr and exits 3.

  cni_runtime.py add|check|del|gc|status|version --conflist F --cache DIR \\
      [--netns PATH --id ID --ifname eth0 --args 'K=V;..'] [--port [HOSTIP:]8080:80/tcp]...
      [--label K=V]... [--only TYPE] [--valid ID/IFNAME]... [--no-prev | --prev-from F]

Prints the final result (ADD), the error object of the first plugin that
failed (and exits 1 or 2), or nothing.
"""
import argparse
import ipaddress
import json
import os
import subprocess
import sys

CNI_PATH = os.environ.get("CNI_TEST_PATH", "/usr/lib/cni")


def fail(msg):
    print("cni_runtime: spec violation: " + msg, file=sys.stderr)
    sys.exit(3)


def check_cidr(text, where):
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        fail(f"{where}: {text!r} is not an address/prefix")


def check_result(r, version):
    """The result's shape as SPEC.md (1.x) or the 0.4.0 spec defines it."""
    if not isinstance(r, dict):
        fail("the result is not an object")
    if r.get("cniVersion") != version:
        fail(f"cniVersion {r.get('cniVersion')!r}, the request said {version!r}")
    ifs = r.get("interfaces", [])
    if not isinstance(ifs, list):
        fail("interfaces is not a list")
    for i, f in enumerate(ifs):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            fail(f"interfaces[{i}] has no name")
        for k in ("mac", "sandbox"):
            if k in f and not isinstance(f[k], str):
                fail(f"interfaces[{i}].{k} is not a string")
    for i, ip in enumerate(r.get("ips", [])):
        check_cidr(ip.get("address", ""), f"ips[{i}].address")
        if "gateway" in ip:
            ipaddress.ip_address(ip["gateway"])
        if "interface" in ip and not (isinstance(ip["interface"], int) and 0 <= ip["interface"] < len(ifs)):
            fail(f"ips[{i}].interface {ip['interface']!r} is not an index into interfaces")
        if version.startswith("0."):
            if ip.get("version") not in ("4", "6"):
                fail(f"ips[{i}].version is required by {version}")
        elif "version" in ip:
            fail(f"ips[{i}].version is not allowed in {version}")
    for i, rt in enumerate(r.get("routes", [])):
        check_cidr(rt.get("dst", ""), f"routes[{i}].dst")
    if "dns" in r and not isinstance(r["dns"], dict):
        fail("dns is not an object")


def check_error(e, version):
    if not isinstance(e, dict):
        fail("the error output is not an object")
    if not isinstance(e.get("code"), int) or not isinstance(e.get("msg"), str) or not e["msg"]:
        fail(f"an error object needs an integer code and a msg: {e}")
    if e.get("cniVersion") != version:
        fail(f"error cniVersion {e.get('cniVersion')!r}, the request said {version!r}")
    if "details" in e and not isinstance(e["details"], str):
        fail("details is not a string")


def invoke(plugin, command, args, net, prev):
    conf = dict(plugin)
    conf["cniVersion"] = net["cniVersion"]
    conf["name"] = net["name"]
    caps = plugin.get("capabilities", {})
    conf.pop("capabilities", None)
    rc = {}
    if caps.get("portMappings") and args.port:
        rc["portMappings"] = [port_mapping(p) for p in args.port]
    if rc:
        conf["runtimeConfig"] = rc
    if args.label and plugin["type"] == "moat-cni":
        conf["args"] = {"cni": {"labels": [
            {"key": kv.split("=", 1)[0], "value": kv.split("=", 1)[1]} for kv in args.label]}}
    if prev is not None:
        conf["prevResult"] = prev
    if command == "GC":
        conf["cni.dev/valid-attachments"] = [
            {"containerID": v.split("/")[0], "ifname": v.split("/")[1]} for v in args.valid]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": args.id or "", "CNI_NETNS": args.netns or "",
           "CNI_IFNAME": args.ifname or "", "CNI_ARGS": args.args or "", "CNI_PATH": CNI_PATH}
    exe = os.path.join(CNI_PATH, plugin["type"])
    p = subprocess.run([exe], input=json.dumps(conf).encode(), env=env,
                       capture_output=True, timeout=120)
    out = p.stdout.decode()
    if p.stderr:
        sys.stderr.write(p.stderr.decode())
    return p.returncode, out


def port_mapping(text):
    """8080:80/tcp, 127.0.0.1:8080:80, [::1]:8080:80: an IPv6 hostIP goes
    out bare, as runtimes send it (portmap's convention)."""
    spec, _, proto = text.partition("/")
    host_ip = None
    if spec.startswith("["):
        host_ip, _, spec = spec[1:].partition("]:")
    parts = spec.split(":")
    if len(parts) == 3:
        host_ip = parts.pop(0)
    m = {"hostPort": int(parts[-2]), "containerPort": int(parts[-1]), "protocol": proto or "tcp"}
    if host_ip is not None:
        m["hostIP"] = host_ip
    return m


def cache_file(args, net):
    return os.path.join(args.cache, f"{net['name']}-{args.id}-{args.ifname}.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["add", "check", "del", "gc", "status", "version"])
    ap.add_argument("--conflist", required=True)
    ap.add_argument("--cache", default="/tmp")
    ap.add_argument("--netns")
    ap.add_argument("--id")
    ap.add_argument("--ifname", default="eth0")
    ap.add_argument("--args", default="IgnoreUnknown=1")
    ap.add_argument("--port", action="append", default=[])
    ap.add_argument("--label", action="append", default=[],
                    help="K=V into args.cni.labels (the conventions' way to pass labels)")
    ap.add_argument("--prev-from", help="DEL/CHECK with this file's result as prevResult")
    ap.add_argument("--only", help="run only the plugin of this type")
    ap.add_argument("--valid", action="append", default=[], help="GC: ID/IFNAME to keep")
    ap.add_argument("--no-prev", action="store_true", help="DEL/CHECK without prevResult")
    args = ap.parse_args()
    net = json.load(open(args.conflist))
    version = net["cniVersion"]
    plugins = [p for p in net["plugins"] if not args.only or p["type"] == args.only]
    command = args.command.upper()

    if command == "VERSION":
        for p in plugins:
            code, out = invoke(p, "VERSION", args, net, None)
            v = json.loads(out)
            if code != 0 or version not in v.get("supportedVersions", []):
                fail(f"{p['type']}: VERSION does not list {version}: {out}")
            print(out.strip())
        return 0

    prev = None
    if command in ("CHECK", "DEL") and not args.no_prev and os.path.exists(cache_file(args, net)):
        prev = json.load(open(cache_file(args, net)))
    if args.prev_from:
        prev = json.load(open(args.prev_from))
    order = list(reversed(plugins)) if command == "DEL" else plugins
    for p in order:
        code, out = invoke(p, command, args, net, prev if command != "ADD" or p is not plugins[0] else None)
        if code != 0:
            try:
                err = json.loads(out)
            except ValueError:
                fail(f"{p['type']}: exit {code} without an error object: {out!r}")
            check_error(err, version)
            print(out.strip())
            return 1
        if command == "ADD":
            try:
                result = json.loads(out)
            except ValueError:
                fail(f"{p['type']}: ADD printed no JSON result: {out!r}")
            check_result(result, version)
            # moat enforces; it adds no interface, address or route.
            if p["type"] == "moat-cni" and result != prev:
                fail(f"moat-cni changed prevResult: {prev} -> {result}")
            prev = result
        elif out.strip():
            if command in ("DEL", "GC", "STATUS", "CHECK"):
                fail(f"{p['type']}: {command} printed output on success: {out!r}")
    if command == "ADD":
        os.makedirs(args.cache, exist_ok=True)
        with open(cache_file(args, net), "w") as f:
            json.dump(prev, f)
        print(json.dumps(prev))
    elif command == "DEL" and os.path.exists(cache_file(args, net)):
        os.unlink(cache_file(args, net))
    return 0


if __name__ == "__main__":
    sys.exit(main())
