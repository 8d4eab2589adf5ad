#!/usr/bin/env bash
# Build the libFuzzer targets with clang (build dir build-fuzz) and run each
# on a copy of its seed corpus, for SECONDS in total split evenly across the
# targets (default 60). A target passes if it found no crash, leak, timeout
# or broken invariant. The repository is not modified: new corpus entries
# stay in a temporary directory, and crashing inputs are copied to
# build-fuzz/crashes/ (add them to tests/fuzz/corpus/<target>/ as
# regression seeds once the bug is fixed).
# Usage: tests/fuzz/run.sh [SECONDS]        e.g. tests/fuzz/run.sh 3600
set -euo pipefail
cd "$(dirname "$0")/../.."

total=${1:-60}
targets=(fuzz_wire fuzz_framer fuzz_endpoint fuzz_virtq)
case "$total" in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
per=$((total / ${#targets[@]}))
[ "$per" -ge 1 ] || per=1

tools/setup-deps.sh test
build=build-fuzz
if [ ! -d "$build/meson-private" ]; then
	CC=clang meson setup "$build" -Dfuzz=true -Dtests=disabled >/dev/null
fi
echo "== fuzz: build ($build)" >&2
if ! ninja -C "$build" "${targets[@]/#/tests/fuzz/}" >"$build/ninja.log" 2>&1; then
	cat "$build/ninja.log"
	echo "fuzz: 0 passed, ${#targets[@]} failed (build)"
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/crashes"

passed=0
failed=0
for t in "${targets[@]}"; do
	mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
	cp tests/fuzz/corpus/"$t"/* "$work/$t/corpus/"
	rc=0
	# -timeout catches a receive that blocks; abort_on_error makes a sanitizer
	# report end the run like a crash, so libFuzzer saves the input.
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		"$build/tests/fuzz/$t" -max_total_time="$per" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
		"$work/$t/corpus" >"$work/$t/log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log" | tail -n 1)
	crashes=$(find "$work/$t/artifacts" -type f | wc -l)
	if [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]; then
		passed=$((passed + 1))
		echo "fuzz: $t: ok, ${execs:-?} execs in ${per}s"
	else
		failed=$((failed + 1))
		echo "fuzz: $t: FAILED (exit $rc), ${execs:-?} execs in ${per}s"
		grep -E 'invariant failed|ERROR:|SUMMARY:' "$work/$t/log" | head -n 5 |
			sed 's/^/    /'
		for a in "$work/$t/artifacts"/*; do
			[ -e "$a" ] || continue
			keep="$build/crashes/$t-$(basename "$a")"
			cp "$a" "$keep"
			echo "    reproduce: $build/tests/fuzz/$t $keep"
		done
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
