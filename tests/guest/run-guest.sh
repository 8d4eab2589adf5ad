#!/usr/bin/env bash
# Boot the test guest against a vhost-user-blk back-end and run one job in it.
# Usage: run-guest.sh [options]
#   --job JOB        pattern | fio-verify | probe (default pattern)
#   --queues N       num-queues of the device and of the export; the guest gets
#                    N vCPUs (at most 4) so that blk-mq uses every queue (default 1)
#   --deadline S     hard limit on the run, back-end start to QEMU exit (default
#                    60); stopping QEMU and the back-end then takes at most 3 s more
#   --backend CMD    back-end command template (default $VHU_GUEST_BACKEND, else
#                    qemu-storage-daemon exporting the disk file); placeholders
#                    {sock} {disk} {queues} are replaced by shell-quoted values
#   --dir DIR        what build-initramfs.sh built (default $VHU_GUEST_DIR, else
#                    build/guest); built there if missing; this run's files go
#                    into DIR/run-JOB-qN/
#   --disk-mb N      size of the backing file, a fresh sparse file (default 64)
#   --fio-mb N       disk MiB each fio job covers (default 16)
#   --accel A        auto | tcg | kvm (default $VHU_GUEST_ACCEL, else auto: KVM
#                    only if a probe boot with it passes, remembered in DIR/accel)
# Exit 0 when the guest printed PASS, powered off by itself, the back-end
# survived and (pattern) the host found the guest's bytes in the backing file;
# otherwise 1, with the reason and the last console lines on stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
job=pattern queues=1 deadline=60 disk_mb=64 fio_mb=16 mem=256M
backend=${VHU_GUEST_BACKEND:-}
dir=${VHU_GUEST_DIR:-build/guest}
accel=${VHU_GUEST_ACCEL:-auto}
while [ $# -gt 0 ]; do
	case $1 in
	--job) job=$2 ;;
	--queues) queues=$2 ;;
	--deadline) deadline=$2 ;;
	--backend) backend=$2 ;;
	--dir) dir=$2 ;;
	--disk-mb) disk_mb=$2 ;;
	--fio-mb) fio_mb=$2 ;;
	--accel) accel=$2 ;;
	*) echo "run-guest: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
	esac
	shift 2
done
[ -n "$backend" ] || backend='qemu-storage-daemon
	--blockdev driver=file,node-name=disk0,filename={disk}
	--export type=vhost-user-blk,id=exp0,node-name=disk0,writable=on,num-queues={queues},addr.type=unix,addr.path={sock}'

qemu=qemu-system-x86_64
bios=/usr/share/qemu/qboot.rom
us() { echo "${EPOCHREALTIME/[.,]/}"; } # microseconds, no fork of a program
since() { local d=$(($(us) - $1)); printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000)); }
left() { local l=$((deadline - ($(us) - start) / 1000000)); echo $((l > 1 ? l : 1)); }

bash "$here/build-initramfs.sh" "$dir"
start=$(us) # the deadline starts here, with the image built
dir=$(cd "$dir" && pwd)
run=$dir/run-$job-q$queues
rm -rf "$run"
mkdir -p "$run"
# A unix socket path has a short limit (108 bytes); keep it out of the build dir.
sockdir=$(mktemp -d /tmp/vhu-guest.XXXXXX)
sock=$sockdir/vu.sock
disk=$run/disk.img
console=$run/console.log
truncate -s "${disk_mb}M" "$disk"

# On any exit, QEMU and the back-end go too (the back-end is in a session of
# its own, out of reach of whoever kills our process group: meson on timeout).
backend_pid= qemu_pid=
cleanup() {
	[ -z "$qemu_pid" ] || kill -KILL "$qemu_pid" 2>/dev/null || true
	[ -z "$backend_pid" ] || kill -KILL -- -"$backend_pid" 2>/dev/null || true
	rm -rf "$sockdir"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

fail() {
	echo "run-guest: FAIL job=$job queues=$queues: $*" >&2
	if [ -s "$console" ]; then
		echo "--- last console lines ($console)" >&2
		tail -n 25 "$console" >&2
	fi
	if [ -s "$run/backend.log" ]; then
		echo "--- back-end log ($run/backend.log)" >&2
		tail -n 10 "$run/backend.log" >&2
	fi
	exit 1
}

# QEMU for the guest (exec: run it with & and $! is QEMU); $1 is the
# accelerator, the rest its extra arguments.
boot() {
	local a=$1
	shift
	local cpu=max
	[ "$a" = kvm ] && cpu=host
	local smp=$queues
	[ "$smp" -lt 1 ] && smp=1
	[ "$smp" -gt 4 ] && smp=4
	# qboot, not SeaBIOS: SeaBIOS reads the disk before Linux starts and
	# hangs there if the back-end does not answer.
	exec "$qemu" -accel "$a" -cpu "$cpu" -machine pc -smp "$smp" -m "$mem" \
		-object memory-backend-memfd,id=mem,size="$mem",share=on -numa node,memdev=mem \
		-bios "$bios" -kernel "$dir/kernel" -nographic -nodefaults -serial stdio \
		-no-reboot "$@" </dev/null
}

# Wait for PID for at most SECONDS; kill it then (exit 124). With a third
# argument (the back-end), give PID 3 s more once that process has ended, then
# kill it (exit 125): a guest cannot finish without its disk.
wait_deadline() {
	local pid=$1 end=$(($(us) + $2 * 1000000)) other=${3:-}
	local over=
	while kill -0 "$pid" 2>/dev/null; do
		if [ -n "$other" ] && ! kill -0 "$other" 2>/dev/null; then
			other=
			if [ $(($(us) + 3000000)) -lt "$end" ]; then
				end=$(($(us) + 3000000))
				over=125
			fi
		fi
		if [ "$(us)" -gt "$end" ]; then
			kill -TERM "$pid" 2>/dev/null
			sleep 1
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			return "${over:-124}"
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null
}

# KVM only where a stock kernel really boots under it (not under the nested
# kvm_pvm of the dev machines, where it aborts or stops on an emulation error).
if [ "$accel" = auto ]; then
	if [ -f "$dir/accel" ]; then
		accel=$(cat "$dir/accel")
	else
		accel=tcg
		if [ -w /dev/kvm ]; then
			boot kvm -initrd "$dir/base.cpio" -append 'console=ttyS0 quiet panic=-1 vhu.job=probe' \
				>"$dir/accel-probe.log" 2>&1 &
			qemu_pid=$!
			wait_deadline "$qemu_pid" 20 || true
			qemu_pid=
			grep -q 'VHU-GUEST: PASS' "$dir/accel-probe.log" && accel=kvm
		fi
		echo "$accel" >"$dir/accel"
		echo "run-guest: accelerator $accel (probe log $dir/accel-probe.log)" >&2
	fi
fi

# The back-end, in its own process group so that wrapper scripts and their
# children go together.
q() { printf '%q' "$1"; }
cmd=${backend//\{sock\}/$(q "$sock")}
cmd=${cmd//\{disk\}/$(q "$disk")}
cmd=${cmd//\{queues\}/$(q "$queues")}
cmd=$(echo "$cmd" | tr '\n' ' ')
echo "$cmd" >"$run/backend.cmd"
setsid bash -c "exec $cmd" >"$run/backend.log" 2>&1 &
backend_pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	kill -0 "$backend_pid" 2>/dev/null || { wait "$backend_pid" && rc=0 || rc=$?; backend_pid=; fail "back-end exited ($rc) before listening: $cmd"; }
	sleep 0.1
done
[ -S "$sock" ] || fail "back-end made no socket $sock in 10 s: $cmd"

# fio's libraries unpack to ~85 MB of tmpfs, more than 256 MiB of RAM can
# hold next to the archive itself; the pattern job boots without them.
initrd=$dir/full.cpio mem=512M
[ "$job" = pattern ] && initrd=$dir/base.cpio mem=256M
append="console=ttyS0 quiet panic=-1 vhu.job=$job vhu.fio_mb=$fio_mb"
if [ "$job" = pattern ]; then
	seed=$(od -An -tx4 -N4 /dev/urandom | tr -d ' ')
	last=$((disk_mb * 1048576 - 4096))
	# offset:length in bytes; odd sectors, a single sector, large requests, the end
	extents="0:4096,4608:512,1048576:65536,4194816:1536,8388608:262144,$last:4096"
	append+=" vhu.seed=$seed vhu.extents=$extents"
fi

boot_start=$(us)
boot "$accel" -chardev socket,id=vu,path="$sock" \
	-device vhost-user-blk-pci,chardev=vu,num-queues="$queues" \
	-initrd "$initrd" -append "$append" >"$console" 2>&1 &
qemu_pid=$!
rc=0
wait_deadline "$qemu_pid" "$(left)" "$backend_pid" || rc=$?
qemu_pid=
wall=$(since "$boot_start")

# The back-end must outlive the guest; one that ends by itself with status 0
# once the guest has passed and gone (its front-end left) is fine too.
if ! kill -0 "$backend_pid" 2>/dev/null; then
	wait "$backend_pid" && brc=0 || brc=$?
	backend_pid=
	if [ $brc -ne 0 ] || [ $rc -ne 0 ] || ! grep -aq '^VHU-GUEST: PASS' "$console"; then
		fail "back-end exited ($brc) during the run"
	fi
else
	kill -TERM -- -"$backend_pid" 2>/dev/null || true
	for _ in $(seq 20); do kill -0 "$backend_pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- -"$backend_pid" 2>/dev/null || true
	wait "$backend_pid" 2>/dev/null || true
	backend_pid=
fi

uptime_at() { sed -n "s/^VHU-GUEST: $1.* uptime=\([0-9.]*\).*/\1/p" "$console" | head -1; }
result=$(grep -a -m1 -E '^VHU-GUEST: (PASS|FAIL)' "$console" | tr -d '\r' || true)
case $rc in
0) ;;
124 | 125)
	case $result in
	*PASS*) fail "guest passed but did not power off within the deadline (${deadline} s): stuck shutdown" ;;
	*FAIL*) fail "${result#VHU-GUEST: }; then no reset within the deadline" ;;
	esac
	if grep -aq '^VHU-GUEST: disk' "$console"; then
		fail "stuck disk: no result ${deadline} s into the run, the disk appeared at $(uptime_at disk) s guest uptime"
	elif grep -aq '^VHU-GUEST: init' "$console"; then
		fail "no disk: deadline (${deadline} s) passed in /init before /dev/vda appeared"
	fi
	fail "stuck boot: deadline (${deadline} s) passed before /init ran"
	;;
*) [ -n "$result" ] || fail "QEMU exited $rc without a result" ;;
esac
case $result in
*PASS*) ;;
*FAIL*) fail "${result#VHU-GUEST: }" ;;
*) fail "guest powered off without a result" ;;
esac
[ $rc -eq 0 ] || fail "guest passed but QEMU exited $rc"

# The host's own look at the backing file: every extent holds exactly what the
# guest wrote, and the 512 bytes either side of it are still zero.
if [ "$job" = pattern ]; then
	for e in ${extents//,/ }; do
		off=${e%:*} len=${e#*:}
		busybox awk -v seed="$seed" -v off="$off" -v len="$len" -f "$here/pattern.awk" >"$run/want"
		dd if="$disk" of="$run/got" bs="$len" count=1 skip="$off" iflag=skip_bytes status=none
		cmp "$run/want" "$run/got" >/dev/null ||
			fail "host: backing file at $off..+$len differs from what the guest wrote ($(cmp "$run/want" "$run/got" 2>&1 | head -1))"
		for g in $((off - 512)) $((off + len)); do
			[ "$g" -ge 0 ] && [ $((g + 512)) -le $((disk_mb * 1048576)) ] || continue
			case ",$extents," in *",$g:"*) continue ;; esac
			[ -z "$(dd if="$disk" bs=512 count=1 skip="$g" iflag=skip_bytes status=none | tr -d '\0')" ] ||
				fail "host: bytes at $g, next to the extent at $off, are not zero"
		done
	done
	rm -f "$run/want" "$run/got"
	result+=" host-check=ok"
fi

echo "run-guest: PASS job=$job queues=$queues accel=$accel wall=${wall}s disk_at=$(uptime_at disk)s total=$(since "$start")s | ${result#VHU-GUEST: PASS }"
