#!/usr/bin/env bash
# The main job: install what is missing, build optimised, and run vhu-bench
# on its default scenario. Extra arguments go to vhu-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup-deps.sh build
opts=(-Dbuildtype=release -Db_lto=true -Dtests=disabled)
# A build dir of an older layout that cannot be reconfigured is set up again.
if [ -d build-release/meson-private ] && ! meson configure build-release "${opts[@]}" >/dev/null 2>&1; then
	rm -rf build-release
fi
if [ ! -d build-release/meson-private ]; then
	meson setup build-release "${opts[@]}" >/dev/null
fi
ninja -C build-release >/dev/null
exec build-release/bench/vhu-bench "$@"
