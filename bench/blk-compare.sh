#!/usr/bin/env bash
# vhu-blk waiting for kicks, vhu-blk --poll and qemu-storage-daemon on the
# same backing, in one vhu-bench blk run: starts the three back-ends pinned
# to one CPU, the client pinned to another, and stops them at the end.
#
#   bench/blk-compare.sh [vhu-bench options...]
#
# Environment (defaults in brackets):
#   BUILD     the build directory holding tools/vhu-blk and bench/vhu-bench
#             [build-release, built by bench/run.sh; else build]
#   BACKING   file or null [file]
#   FILE      the backing file, created sparse at 1 GiB if missing
#             [/tmp/vhu-blk-compare.raw]
#   QUEUES    virtqueues each back-end offers and the client drives [1]
#   BE_CPU    the back-ends' CPU [1]
#   CLI_CPU   the client's CPU [0]
#   POLL_IDLE vhu-blk --poll's idle interval in µs [its default]
# vhu-bench options given replace the defaults: --scenario blk-randread
# --iodepth 1,32 --reps 3 (add --no-event-idx to compare without EVENT_IDX).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD:-}
if [ -z "$build" ]; then
	build=build-release
	[ -x "$build/tools/vhu-blk" ] || build=build
fi
backing=${BACKING:-file}
file=${FILE:-/tmp/vhu-blk-compare.raw}
queues=${QUEUES:-1}
be_cpu=${BE_CPU:-1}
cli_cpu=${CLI_CPU:-0}
qsd=$(command -v qemu-storage-daemon || true)
for f in "$build/tools/vhu-blk" "$build/bench/vhu-bench"; do
	[ -x "$f" ] || { echo "blk-compare: $f is not built (BUILD=$build)" >&2; exit 2; }
done
[ -n "$qsd" ] || { echo "blk-compare: qemu-storage-daemon is not installed" >&2; exit 2; }

dir=$(mktemp -d /tmp/vhu-blk-compare.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

if [ "$backing" = null ]; then
	blk=(--null 1G)
	blockdev="driver=null-co,node-name=b0,size=1073741824,read-zeroes=on"
else
	[ -e "$file" ] || truncate -s 1G "$file"
	blk=(--file "$file")
	# Three back-ends share the file, one measured at a time: no image locks.
	blockdev="driver=file,node-name=b0,filename=$file,cache.direct=off,locking=off"
fi
poll=(--poll)
[ -z "${POLL_IDLE:-}" ] || poll+=(--poll-idle-us "$POLL_IDLE")

taskset -c "$be_cpu" "$qsd" --blockdev "$blockdev" \
	--export "type=vhost-user-blk,id=e0,node-name=b0,num-queues=$queues,writable=on,addr.type=unix,addr.path=$dir/qsd.sock" \
	>"$dir/qsd.log" 2>&1 &
pids+=($!)
taskset -c "$be_cpu" "$build/tools/vhu-blk" --socket "$dir/wait.sock" "${blk[@]}" \
	--queues "$queues" -q >"$dir/wait.log" 2>&1 &
pids+=($!)
taskset -c "$be_cpu" "$build/tools/vhu-blk" --socket "$dir/poll.sock" "${blk[@]}" \
	--queues "$queues" "${poll[@]}" -q >"$dir/poll.log" 2>&1 &
pids+=($!)

for s in qsd wait poll; do
	for _ in $(seq 100); do
		[ -S "$dir/$s.sock" ] && break
		sleep 0.1
	done
	[ -S "$dir/$s.sock" ] || { echo "blk-compare: $s did not listen:" >&2; cat "$dir/$s.log" >&2; exit 1; }
done

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--scenario blk-randread --iodepth 1,32 --reps 3)
"$build/bench/vhu-bench" "${args[@]}" --queues "$queues" --cpu "$cli_cpu" \
	--connect qsd="$dir/qsd.sock" --connect vhu-blk="$dir/wait.sock" \
	--connect vhu-blk-poll="$dir/poll.sock"
