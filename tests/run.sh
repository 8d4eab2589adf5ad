#!/usr/bin/env bash
# The whole test suite: install what is missing, build with -Dwerror=true,
# run the Criterion suite, then build and run it again under ASan+UBSan,
# then fuzz each libFuzzer target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup-deps.sh test

setup() { # dir, options...
	local dir=$1; shift
	if [ -d "$dir/meson-private" ]; then
		# A build dir of an older layout (an option whose type changed) cannot
		# be reconfigured: start it again rather than fail without a word.
		if meson configure "$dir" "$@" >/dev/null 2>&1; then
			return
		fi
		echo "== $dir: cannot reconfigure it; setting it up again" >&2
		rm -rf "$dir"
	fi
	meson setup "$dir" "$@" >/dev/null
}

status=0
setup build -Dwerror=true -Dtests=enabled
setup build-asan -Dwerror=true -Dtests=enabled -Db_sanitize=address,undefined -Db_lundef=false
for dir in build build-asan; do
	echo "== $dir: build" >&2
	ninja -C "$dir" >/dev/null
	echo "== $dir: test" >&2
	meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
done

# Bounded libFuzzer run on the seed corpus (tests/fuzz/README.md has the long run).
echo "== fuzz" >&2
mkdir -p build
tests/fuzz/run.sh 60 2>&1 | tee build/fuzz.log || status=1

python3 tests/summary.py build build-asan --also build/fuzz.log || status=1
exit $status
