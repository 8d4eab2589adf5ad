#!/usr/bin/env python3
"""API checks, run as a meson test:
1. every public header compiles on its own (C and with -Wall -Werror);
2. libvhu.so exports exactly the functions the public headers declare
   (no missing implementation, nothing exported that is not documented),
   each with the symbol version lib/libvhu.map gives it: the node that
   lists it by name, else the last node (the release being developed);
3. libvhu.a has exactly the same global symbols as libvhu.so exports: the
   public functions, nothing internal (a static link sees the API only);
4. the README's example compiles against the headers and each library and,
   run with no peer, fails cleanly with a named error.
Usage: check_api.py SRC BUILD SANITIZE LIBVHU_A [LIBVHU_SO]
(no LIBVHU_SO with -Ddefault_library=static).
Prints 'api: N passed, N failed'."""
import os
import re
import subprocess
import sys
import tempfile

src, build = sys.argv[1], sys.argv[2]
# The build's sanitizers (b_sanitize): the example must link their runtime too.
sanitize = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "none" else None
# meson passes the libraries' paths relative to the build directory
static_lib = os.path.join(build, sys.argv[4])
shared_lib = os.path.join(build, sys.argv[5]) if len(sys.argv) > 5 else None
san_flags = [f"-fsanitize={sanitize}"] if sanitize else []
cc = os.environ.get("CC", "cc")
# <vhu/version.h> is generated into the build tree.
incs = ["-I", f"{build}/lib/include", "-I", f"{src}/lib/include", "-I", f"{src}/uring/include"]
headers = sorted(
    [f"{d}/{h}" for d in (f"{src}/lib/include/vhu", f"{src}/uring/include/vhu")
     for h in os.listdir(d) if h.endswith(".h")]
    + [f"{build}/lib/include/vhu/version.h"])
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", file=sys.stderr)


with tempfile.TemporaryDirectory() as tmp:
    for h in headers:
        c = f"{tmp}/h.c"
        with open(c, "w") as f:
            f.write(f'#include <vhu/{os.path.basename(h)}>\n')
        r = subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-c", c,
                            "-o", f"{tmp}/h.o"] + incs, capture_output=True, text=True)
        check(r.returncode == 0, f"{os.path.basename(h)} does not compile alone:\n{r.stderr}")

    declared = set()
    for h in headers:
        text = open(h).read()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(r"static inline[^{]*\{.*?\n\}", "", text, flags=re.S)
        for m in re.finditer(r"\b(vhu_\w+)\s*\(", text):
            before = text[:m.start()].rstrip()
            # a declaration: preceded by a type, not by '(' or ',' (a call or a parameter)
            if before and before[-1] not in "(,=" and not before.endswith("return"):
                declared.add(m.group(1))

    def nm(args, path):
        r = subprocess.run(["nm"] + args + [path], capture_output=True, text=True)
        check(r.returncode == 0, f"nm {path}: {r.stderr}")
        return r.stdout.splitlines()

    # libvhu.a: every global symbol it defines, of any kind ('ar' members'
    # headers and blank lines have fewer than 3 fields).
    static_globals = {l.split()[2] for l in nm(["-g", "--defined-only"], static_lib)
                      if len(l.split()) == 3}
    versions = {}
    if shared_lib:
        for l in nm(["-D", "--defined-only"], shared_lib):
            f = l.split()
            if len(f) == 3 and f[1] != "A":  # A: a version node's own symbol
                name, _, ver = f[2].partition("@")
                versions[name] = ver.lstrip("@")
        exported = set(versions)
        for name in sorted(declared - exported):
            check(False, f"{name} is declared in a public header but not exported by libvhu.so"
                  " (declare it in a public header inside its visibility push/pop)")
        for name in sorted(exported - declared):
            check(False, f"libvhu.so exports {name}, which no public header declares")
        check(bool(declared) and declared <= exported, "declared functions exported")
        for name in sorted(static_globals ^ exported):
            where = "libvhu.a" if name in static_globals else "libvhu.so"
            check(False, f"{name} is global in {where} only")
        check(static_globals == exported, "libvhu.a and libvhu.so have the same global symbols")
    else:
        exported = static_globals
        for name in sorted(declared ^ static_globals):
            check(False, f"{name}: declared in a public header or global in libvhu.a, not both")
        check(bool(declared) and declared == static_globals, "libvhu.a has the API only")

    if shared_lib:
        # The map: released nodes list their functions by name; only the last
        # node (the release being developed) may use a wildcard.
        text = re.sub(r"/\*.*?\*/", "", open(f"{src}/lib/libvhu.map").read(), flags=re.S)
        nodes = re.findall(r"(VHU_[\w.]+)\s*\{(.*?)\}", text, re.S)
        check(len(nodes) >= 1, "libvhu.map has symbol version nodes")
        listed = {}
        for i, (node, body) in enumerate(nodes):
            glob = re.search(r"global:(.*?)(?:local:|$)", body, re.S)
            names = [n.strip() for n in (glob.group(1) if glob else "").split(";") if n.strip()]
            for n in names:
                if any(c in n for c in "*?["):
                    check(i == len(nodes) - 1, f"libvhu.map: {node} is released but has a wildcard {n}")
                else:
                    check(n not in listed, f"libvhu.map: {n} listed in {listed.get(n)} and {node}")
                    listed[n] = node
        last = nodes[-1][0] if nodes else None
        for name in sorted(listed.keys() - exported):
            check(False, f"libvhu.map lists {name} ({listed[name]}), which libvhu.so does not export"
                  " (a symbol of a released node must never go away)")
        for name in sorted(exported):
            want = listed.get(name, last)
            check(versions[name] == want,
                  f"libvhu.so exports {name} as version {versions[name] or 'none'}, libvhu.map says {want}")

    readme = open(f"{src}/README.md").read()
    m = re.search(r"```c\n(.*?)```", readme, re.S)
    check(m is not None, "README has a C example")
    if m:
        with open(f"{tmp}/ex.c", "w") as f:
            f.write(m.group(1))
        links = [("libvhu.a", [static_lib, "-luring"])]
        if shared_lib:
            d = os.path.dirname(shared_lib)
            links.append(("libvhu.so", [f"-L{d}", "-lvhu", f"-Wl,-rpath,{d}"]))
        for what, link in links:
            r = subprocess.run([cc, "-std=gnu11", "-Wall", "-Werror", f"{tmp}/ex.c", "-o", f"{tmp}/ex"]
                               + link + san_flags + incs, capture_output=True, text=True)
            check(r.returncode == 0, f"README example does not build with {what}:\n{r.stderr}")
            if r.returncode == 0:
                env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
                r = subprocess.run([f"{tmp}/ex", f"{tmp}/no-such.sock"], capture_output=True,
                                   text=True, env=env)
                check(r.returncode == 1 and "connect:" in r.stderr,
                      f"README example ({what}) without a peer: rc {r.returncode}, {r.stderr!r}")

print(f"api: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
