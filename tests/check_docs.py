#!/usr/bin/env python3
"""The API reference (built by doxygen, docs/meson.build), as a meson test:
doxygen had nothing to warn about, the reference carries the project version,
and every public function of libvhu.a has an entry in it.
Usage: check_docs.py HTML_DIR WARNINGS_LOG VERSION LIBVHU_A (paths relative to
the build directory are fine). Prints 'docs: N passed, N failed'."""
import os
import re
import subprocess
import sys

html, log, version, lib = sys.argv[1:5]
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", file=sys.stderr)


warnings = open(log).read().strip() if os.path.exists(log) else ""
check(not warnings, f"doxygen warned:\n{warnings}")
index = f"{html}/index.html"
check(os.path.exists(index), f"no {index}")
if os.path.exists(index):
    check(version in open(index).read(), f"{index} does not name version {version}")
funcs = f"{html}/globals_func.html"
# Past a few hundred entries doxygen splits the index by initial
# (globals_func_v.html, ...): every page counts.
pages = sorted(f for f in os.listdir(html) if re.fullmatch(r"globals_func(_\w+)?\.html", f)) \
    if os.path.isdir(html) else []
text = "".join(open(f"{html}/{f}").read() for f in pages)
nm = subprocess.run(["nm", "-g", "--defined-only", lib], capture_output=True, text=True)
check(nm.returncode == 0, f"nm {lib}: {nm.stderr}")
names = sorted({l.split()[2] for l in nm.stdout.splitlines() if len(l.split()) == 3})
check(bool(names), f"no functions in {lib}")
for name in names:
    check(f"<li>{name}()" in text, f"{name} has no entry in {funcs}")

print(f"docs: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
