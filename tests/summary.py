#!/usr/bin/env python3
"""Add up the Criterion results of every test binary in the given meson
build directories (and the closing lines of logs given with --also) and print one closing line: 'tests: N passed, N failed'."""
import json
import re
import sys

synth = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")
plain = re.compile(r"^\w+: (\d+) passed, (\d+) failed$", re.M)
passed = failed = 0
args = sys.argv[1:]
also = []
while "--also" in args:
    i = args.index("--also")
    also.append(args[i + 1])
    del args[i:i + 2]
for log in also:
    # another runner's closing line ('fuzz: N passed, N failed'); none is a failure
    with open(log) as f:
        m = plain.findall(f.read())
    if m:
        passed += int(m[-1][0])
        failed += int(m[-1][1])
    else:
        failed += 1
        print(f"{log}: no closing line", file=sys.stderr)
for build in args:
    with open(f"{build}/meson-logs/testlog.json") as f:
        for line in f:
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            m = synth.search(out)
            bad_here = 0
            p = plain.search(out)
            if p and not m:
                passed += int(p.group(1))
                bad_here = int(p.group(2))
                failed += bad_here
            if m:
                tested, ok, bad, crash = map(int, m.groups())
                passed += ok
                bad_here = bad + crash
                failed += bad_here
            if t.get("result") != "OK" and bad_here == 0:
                # A binary that failed outside its tests (a leak caught in
                # teardown, a crash, a timeout) counts as one failure more.
                failed += 1
                print(f"{build}: {t['name']}: {t.get('result')}", file=sys.stderr)
print(f"tests: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
