#!/usr/bin/env bash
# The main job: install what is missing, build optimised, and run vhu-bench
# on its default scenario. Extra arguments go to vhu-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup-deps.sh build
if [ -d build-release/meson-private ]; then
	meson configure build-release -Dbuildtype=release -Db_lto=true -Dtests=disabled >/dev/null
else
	meson setup build-release -Dbuildtype=release -Db_lto=true -Dtests=disabled >/dev/null
fi
ninja -C build-release >/dev/null
exec build-release/bench/vhu-bench "$@"
