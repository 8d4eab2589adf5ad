#!/usr/bin/env bash
# Boot the test guest against a vhost-user-blk back-end and run one job in it.
# Usage: run-guest.sh [options]
#   --job JOB        pattern | fio-verify | fio-restart | probe (default pattern)
#   --queues N       num-queues of the device and of the export; the guest gets
#                    N vCPUs (at most 4) so that blk-mq uses every queue (default 1)
#   --deadline S     hard limit on the run, back-end start to QEMU exit (default
#                    60); stopping QEMU and the back-end then takes at most 3 s more
#   --backend CMD    back-end command template (default $VHU_GUEST_BACKEND, else
#                    qemu-storage-daemon exporting the disk file); placeholders
#                    {sock} {disk} {queues} are replaced by shell-quoted values;
#                    with {ready} (a file path) QEMU starts only once the
#                    back-end has also created that file
#   --dir DIR        what build-initramfs.sh built (default $VHU_GUEST_DIR, else
#                    build/guest); built there if missing; this run's files go
#                    into DIR/run-JOB-qN/ (with restarts, DIR/run-JOB-qN-SIG-WHEN/)
#   --disk-mb N      size of the backing file, a fresh sparse file (default 64)
#   --fio-mb N       disk MiB each fio job covers (default 16)
#   --accel A        auto | tcg | kvm (default $VHU_GUEST_ACCEL, else auto: KVM
#                    only if a probe boot with it passes, remembered in DIR/accel)
#   --restarts N     stop the back-end N times under the guest's I/O and start
#                    it again on the same socket and file (default 0); QEMU's
#                    chardev reconnects (reconnect=1). Each stop waits for the
#                    guest to complete --restart-ios requests through the
#                    current back-end, then a random 0..--jitter-ms ms
#                    (--stop-at idle: one queue only, it looks at queue 0)
#   --signal SIG     KILL (default) or TERM: how the back-end is stopped
#   --seed N         seeds the stop points and fio-restart's I/O (default: a
#                    random one, printed; pass it back to replay a failure)
#   --restart-ios N  guest completions per back-end before it is stopped (256)
#   --jitter-ms N    (default 300)
#   --stop-at WHEN   inflight (default): each stop finds requests in flight in
#                    the back-end's inflight region (INFLIGHT_SHMFD required);
#                    idle: each stop comes once the back-end has completed all
#                    the guest gave it, the guest frozen (for a back-end without
#                    inflight tracking: the harness and QEMU's reconnect alone)
# Exit 0 when the guest printed PASS, powered off by itself, the back-end
# survived and (pattern, fio-restart) the host found the guest's data in the
# backing file; otherwise 1, with the reason and the last console lines on
# stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
job=pattern queues=1 deadline=60 disk_mb=64 fio_mb=16 mem=256M
restarts=0 signal=KILL seed= restart_ios=256 jitter_ms=300 stop_at=inflight
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
	--restarts) restarts=$2 ;;
	--signal) signal=$2 ;;
	--seed) seed=$2 ;;
	--restart-ios) restart_ios=$2 ;;
	--jitter-ms) jitter_ms=$2 ;;
	--stop-at) stop_at=$2 ;;
	*) echo "run-guest: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
	esac
	shift 2
done
case $signal:$stop_at in
KILL:inflight | KILL:idle | TERM:inflight | TERM:idle) ;;
*) echo "run-guest: --signal KILL|TERM, --stop-at inflight|idle, not $signal, $stop_at" >&2; exit 2 ;;
esac
if [ "$restarts" -gt 0 ] && [ "$queues" -ne 1 ] && [ "$stop_at" = idle ]; then
	echo "run-guest: --stop-at idle with one queue only (it looks at queue 0's rings)" >&2
	exit 2
fi
[ -n "$seed" ] || seed=$((${EPOCHREALTIME/[.,]/} % 1000000))
RANDOM=$seed # the stop points: the same seed, the same jitters
what=
[ "$restarts" -eq 0 ] || what=" restarts=$restarts signal=$signal stop-at=$stop_at seed=$seed"
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
[ "$restarts" -eq 0 ] || run+=-$signal-$stop_at
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

# fd 3: our stderr, also where the restart loop's stderr goes elsewhere.
exec 3>&2
fail() {
	echo "run-guest: FAIL job=$job queues=$queues$what: $*" >&3
	if [ -s "$console" ]; then
		echo "--- last console lines ($console)" >&3
		tail -n 25 "$console" >&3
	fi
	if [ -s "$run/backend.log" ]; then
		echo "--- back-end log ($run/backend.log)" >&3
		tail -n 10 "$run/backend.log" >&3
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
ready=
if [[ $cmd == *'{ready}'* ]]; then
	ready=$run/backend.ready
	cmd=${cmd//\{ready\}/$(q "$ready")}
fi
cmd=$(echo "$cmd" | tr '\n' ' ')
echo "$cmd" >"$run/backend.cmd"

# The inode of the socket listening on $sock, from the kernel's list (not the
# file: a killed back-end leaves its socket file behind, and its io_uring can
# keep the socket listening a few ms after the process has gone).
listener() {
	awk -v p="$sock" '$NF == p && $4 == "00010000" { i = $7 } END { print i }' /proc/net/unix
}
# Start the back-end (again) and wait for a new socket to listen on $sock;
# $1 names the instance in the messages.
listener_ino=
start_backend() {
	local end=$(($(us) + 10000000)) rc ino
	[ -z "$ready" ] || rm -f "$ready"
	echo "=== back-end $1 ($(since "$start") s)" >>"$run/backend.log"
	setsid bash -c "exec $cmd" >>"$run/backend.log" 2>&1 &
	backend_pid=$!
	until ino=$(listener) && [ -n "$ino" ] && [ "$ino" != "$listener_ino" ] &&
		{ [ -z "$ready" ] || [ -e "$ready" ]; }; do
		if ! kill -0 "$backend_pid" 2>/dev/null; then
			wait "$backend_pid" 2>/dev/null && rc=0 || rc=$?
			backend_pid=
			fail "back-end $1 exited ($rc) before listening: $cmd"
		fi
		[ "$(us)" -lt "$end" ] || fail "back-end $1 listened on no socket $sock in 10 s: $cmd"
		sleep 0.02
	done
	listener_ino=$ino
}
start_backend 0

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
[ "$job" = fio-restart ] && append+=" vhu.seed=$seed"
# QEMU connects again to a back-end that went away, every second.
chardev=socket,id=vu,path=$sock
# A monitor to find the rings by (--stop-at idle).
qmp=$sockdir/qmp.sock
qemu_extra=()
[ "$restarts" -eq 0 ] || chardev+=,reconnect=1 qemu_extra=(-qmp "unix:$qmp,server=on,wait=off")

# Requests the guest has completed so far (reads + writes), from the last
# 'VHU-GUEST: io r=N w=N' line of fio-restart (printed every 0.1 s); 0
# before the first. Sets ticks to the number of those lines.
ticks=0
guest_ios() {
	local l
	ticks=$(grep -ac '^VHU-GUEST: io r=' "$console")
	l=$(grep -a '^VHU-GUEST: io r=[0-9]* w=[0-9]*.$' "$console" | tail -n 1)
	if [[ $l =~ r=([0-9]+)\ w=([0-9]+) ]]; then
		echo $((BASH_REMATCH[1] + BASH_REMATCH[2]))
	else
		echo 0
	fi
}

# An fd of QEMU's on a memfd whose name matches the pattern $1 (the guest's
# RAM, an inflight region), or nothing.
qemu_fd() {
	local f
	for f in /proc/"$qemu_pid"/fd/*; do
		case $(readlink "$f" 2>/dev/null) in
		/memfd:$1' (deleted)') echo "$f"; return ;;
		esac
	done
}

# Descriptors the back-end has taken and not completed, on every queue, as
# its inflight region says (the one QEMU got with GET_INFLIGHT_FD and keeps
# open): one area per queue, each a 16-byte header with desc_num at byte
# 10, then 16 bytes per descriptor, the first its inflight flag, rounded up
# to 64 bytes. '-' without a region (a back-end without INFLIGHT_SHMFD).
# The region is copied to $1.
inflight_count() {
	local f n area size q total=0 c
	f=$(qemu_fd '*inflight*')
	[ -n "$f" ] || { echo -; return; }
	cat "$f" >"$1"
	n=$(od -An -tu2 -j10 -N2 "$1" | tr -d " ")
	area=$(((16 + 16 * n + 63) / 64 * 64))
	size=$(stat -c %s "$1")
	for ((q = 0; q < size / area; q++)); do
		c=$(od -An -tu1 -w16 -v -j$((q * area + 16)) -N$((16 * n)) "$1" |
			awk '$1 != 0 { n++ } END { print n + 0 }')
		total=$((total + c))
	done
	echo "$total"
}

# Queue 0's avail and used rings: their guest-physical addresses from QEMU's
# monitor (once; the guest keeps its rings), read in the guest's RAM (a
# memfd whose offset is the address below 4 GiB). find_rings first, then
# ring_idx avail|used prints that ring's idx.
ring_avail= ring_used= ram=
find_rings() {
	read -r ring_avail ring_used < <(python3 - "$qmp" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
def cmd(name, **args):
    f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r:
            return r["return"]
        if "error" in r:
            sys.exit(r["error"]["desc"])
cmd("qmp_capabilities")
q = cmd("x-query-virtio-vhost-queue-status", path="/machine/peripheral/vblk/virtio-backend", queue=0)
print(q["avail-phys"], q["used-phys"])
PY
	) || true
	ram=$(qemu_fd memory-backend-memfd)
	[ -n "$ring_avail" ] && [ -n "$ram" ] || fail "cannot find queue 0's rings (QEMU's monitor, the guest's RAM)"
}
ring_idx() {
	local a=$ring_avail
	[ "$1" = used ] && a=$ring_used
	od -An -tu2 -j$((a + 2)) -N2 "$ram" | tr -d ' '
}

# Stop the back-end $restarts times under the guest's I/O and start it again
# on the same socket and file. Each stop waits for an event, the guest having
# completed $restart_ios requests through the current back-end (it serves:
# QEMU reconnected, the queue runs), then a seeded random 0..$jitter_ms ms;
# then, as --stop-at says:
#   inflight  the back-end is frozen (SIGSTOP) and its inflight region read:
#             if nothing is in flight it resumes and the next point is tried
#             a few ms later (up to 50 times), so that the stop lands on
#             requests it holds. No region fails the run.
#   idle      QEMU is frozen (the guest adds nothing), and the back-end stops
#             once it has completed all the guest made available (used idx =
#             avail idx): a back-end without inflight tracking then loses
#             nothing. QEMU resumes when the back-end has gone.
# Each wait has a deadline that fails the run. Returns early when QEMU exits
# (the result says why). Sets stops to what each stop found in flight.
stops=
restart_backend_loop() {
	local i n n0=0 last jit tries held end rc t avail used
	for i in $(seq "$restarts"); do
		last=-1
		until n=$(guest_ios) && [ "$n" -ge $((n0 + restart_ios)) ]; do
			# 10 s without a completion once fio runs: stalled
			[ "$n" = "$last" ] && [ "$n" != 0 ] || last=$n end=$(($(us) + 10000000))
			if ! kill -0 "$qemu_pid" 2>/dev/null; then
				grep -aq '^VHU-GUEST: PASS' "$console" &&
					fail "stop $i: the guest finished first (at $n completed requests); the run must outlast the stops (--fio-mb)"
				return 0
			fi
			kill -0 "$backend_pid" 2>/dev/null ||
				fail "stop $i: back-end $((i - 1)) exited by itself during the run"
			[ "$(us)" -lt "$end" ] ||
				fail "stop $i: I/O stalled: the guest's completions stayed at $n for 10 s, $((n - n0)) of the $restart_ios wanted through back-end $((i - 1)) (a request lost?)"
			[ "$(left)" -gt 1 ] || return 0 # the result says what was stuck
			sleep 0.02
		done
		jit=$((RANDOM % (jitter_ms + 1)))
		sleep "$((jit / 1000)).$(printf %03d $((jit % 1000)))"
		tries=1
		if [ "$stop_at" = inflight ]; then
			while :; do
				kill -STOP -- -"$backend_pid" 2>/dev/null || true
				held=$(inflight_count "$run/inflight-stop$i.bin")
				[ "$held" = 0 ] && [ $tries -lt 50 ] || break
				kill -CONT -- -"$backend_pid" 2>/dev/null || true
				tries=$((tries + 1))
				t=$((RANDOM % 20))
				sleep "0.$(printf %03d "$t")"
			done
			[ "$held" != - ] ||
				fail "stop $i: QEMU holds no inflight region: the back-end does not offer INFLIGHT_SHMFD (--stop-at inflight)"
			[ "$held" != 0 ] ||
				fail "stop $i: the back-end's inflight region showed no request in flight at $tries points"
			held="$held held"
		else
			[ -n "$ring_avail" ] || find_rings
			kill -STOP "$qemu_pid"
			avail=$(ring_idx avail) used=$(ring_idx used)
			held="$(((avail - used) & 0xffff)) outstanding (avail idx $avail, used idx $used), then idle"
			end=$(($(us) + 10000000))
			while [ "$used" != "$avail" ]; do
				if [ "$(us)" -gt "$end" ]; then
					kill -CONT "$qemu_pid"
					fail "stop $i: with the guest frozen, the back-end completed no more than up to used idx $used of avail idx $avail in 10 s"
				fi
				sleep 0.005
				used=$(ring_idx used)
			done
		fi
		stops+=${stops:+,}${held%% *}
		t=$(since "$start")
		kill -"$signal" -- -"$backend_pid" 2>/dev/null || true
		kill -CONT -- -"$backend_pid" 2>/dev/null || true
		end=$(($(us) + 10000000))
		while kill -0 "$backend_pid" 2>/dev/null; do
			[ "$(us)" -lt "$end" ] || fail "stop $i: back-end $((i - 1)) still running 10 s after SIG$signal"
			sleep 0.02
		done
		wait "$backend_pid" 2>/dev/null && rc=0 || rc=$?
		backend_pid=
		[ "$stop_at" = inflight ] || kill -CONT "$qemu_pid"
		if [ "$signal" = TERM ] && [ $rc -ne 0 ]; then
			fail "stop $i: back-end $((i - 1)) exited $rc on SIGTERM, not 0"
		fi
		echo "run-guest: stop $i: SIG$signal at ${t} s, ${jit} ms after the guest's completion $((n0 + restart_ios)) (try $tries): $held; back-end exit $rc" >&3
		start_backend "$i"
		# What the old back-end completed: the count two progress lines
		# after it has gone (the guest prints what it has seen every 0.1 s).
		guest_ios >/dev/null
		t=$((ticks + 2)) end=$(($(us) + 10000000))
		until guest_ios >/dev/null && [ "$ticks" -ge $t ]; do
			kill -0 "$qemu_pid" 2>/dev/null || return 0
			[ "$(us)" -lt "$end" ] || fail "stop $i: the guest printed no progress line for 10 s"
			sleep 0.02
		done
		n0=$(guest_ios)
	done
}

# After the stops: a request lost in a restart leaves fio waiting for it
# forever. Fail once the guest's completions have not moved for 10 s (a
# restart costs about 1 s: QEMU reconnects every second) while fio runs;
# return when fio has ended or QEMU has exited.
watch_stall() {
	local n last=-1 since_us=$(us)
	while kill -0 "$qemu_pid" 2>/dev/null && ! grep -aq '^VHU-GUEST: fio-json begin' "$console"; do
		n=$(guest_ios)
		if [ "$n" != "$last" ]; then
			last=$n since_us=$(us)
		elif [ $(($(us) - since_us)) -gt 10000000 ]; then
			fail "I/O stalled after the restarts: the guest's completions stayed at $n for 10 s (a request lost?)"
		fi
		[ "$(left)" -gt 1 ] || return 0
		sleep 0.1
	done
}

boot_start=$(us)
boot "$accel" -chardev "$chardev" "${qemu_extra[@]}" \
	-device vhost-user-blk-pci,id=vblk,chardev=vu,num-queues="$queues" \
	-initrd "$initrd" -append "$append" >"$console" 2>&1 &
qemu_pid=$!
# Its stderr, bash's 'Killed' notices of the back-ends, goes to the back-end log.
if [ "$restarts" -gt 0 ]; then
	restart_backend_loop 2>>"$run/backend.log"
	watch_stall 2>>"$run/backend.log"
fi
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

# fio-restart: fio's JSON report from the console; the longest completion
# latency of any read or write (lat_ns max) is the longest I/O pause the
# guest saw. Then the host's own look: fio's verify-only pass over the same
# area of the backing file checks every 4 KiB block's header (magic, offset)
# and crc32c, so a write lost in a restart (a block of zeroes) or a torn one
# fails it.
if [ "$job" = fio-restart ]; then
	sed -n '/^VHU-GUEST: fio-json begin/,/^VHU-GUEST: fio-json end/p' "$console" |
		sed '1d;$d' | tr -d '\r' >"$run/fio.json"
	pause=$(awk '/"lat_ns" : \{/ { l = 1; next }
		l && /"max" :/ { v = $3 + 0; if (v > m) m = v; l = 0 }
		END { if (m > 0) printf "%.1f", m / 1e6 }' "$run/fio.json")
	[ -n "$pause" ] || fail "no latency in fio's JSON report ($run/fio.json)"
	fio --name=restart --filename="$disk" --rw=randwrite --bs=4k --size="${fio_mb}M" \
		--randseed="$seed" --verify=crc32c --verify_only --verify_fatal=1 --verify_state_save=0 \
		--ioengine=psync >"$run/host-verify.log" 2>&1 ||
		fail "host: fio --verify_only on the backing file failed: $(grep -m1 -iE 'verify|error' "$run/host-verify.log")"
	result+=" max_pause=${pause}ms host-verify=ok"
	[ "$restarts" -eq 0 ] || result+=" in_flight_at_stops=$stops"
fi

echo "run-guest: PASS job=$job queues=$queues$what accel=$accel wall=${wall}s disk_at=$(uptime_at disk)s total=$(since "$start")s | ${result#VHU-GUEST: PASS }"
