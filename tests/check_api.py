#!/usr/bin/env python3
"""API checks, run as a meson test:
1. every public header compiles on its own (C and with -Wall -Werror);
2. libvhu.so exports exactly the functions the public headers declare
   (no missing implementation, nothing exported that is not documented);
3. the README's example compiles against the headers and library and, run
   with no peer, fails cleanly with a named error.
Prints 'api: N passed, N failed'."""
import os
import re
import subprocess
import sys
import tempfile

src, build = sys.argv[1], sys.argv[2]
# The build's sanitizers (b_sanitize): the example must link their runtime too.
sanitize = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "none" else None
san_flags = [f"-fsanitize={sanitize}"] if sanitize else []
cc = os.environ.get("CC", "cc")
incs = ["-I", f"{src}/lib/include", "-I", f"{src}/uring/include"]
headers = sorted(
    [f"{src}/lib/include/vhu/{h}" for h in os.listdir(f"{src}/lib/include/vhu")]
    + [f"{src}/uring/include/vhu/{h}" for h in os.listdir(f"{src}/uring/include/vhu")])
lib = f"{build}/uring/libvhu.so"
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
    nm = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True)
    check(nm.returncode == 0, f"nm {lib}: {nm.stderr}")
    exported = {l.split()[-1].split("@")[0] for l in nm.stdout.splitlines()
                if " T " in l or " W " in l}
    for name in sorted(declared - exported):
        check(False, f"{name} is declared in a public header but not exported by libvhu.so")
    for name in sorted(exported - declared):
        check(False, f"libvhu.so exports {name}, which no public header declares")
    check(bool(declared) and declared <= exported, "declared functions exported")

    readme = open(f"{src}/README.md").read()
    m = re.search(r"```c\n(.*?)```", readme, re.S)
    check(m is not None, "README has a C example")
    if m:
        with open(f"{tmp}/ex.c", "w") as f:
            f.write(m.group(1))
        r = subprocess.run([cc, "-std=gnu11", "-Wall", "-Werror", f"{tmp}/ex.c", "-o", f"{tmp}/ex",
                            f"-L{build}/uring", "-lvhu", f"-Wl,-rpath,{build}/uring"] + san_flags + incs,
                           capture_output=True, text=True)
        check(r.returncode == 0, f"README example does not build:\n{r.stderr}")
        if r.returncode == 0:
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
            r = subprocess.run([f"{tmp}/ex", f"{tmp}/no-such.sock"], capture_output=True,
                               text=True, env=env)
            check(r.returncode == 1 and "connect:" in r.stderr,
                  f"README example without a peer: rc {r.returncode}, {r.stderr!r}")

print(f"api: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
