# The bytes the pattern job writes: 64-byte records, each naming the run's
# seed and its own byte offset on the disk, so data written to or read from
# the wrong place, or left over from another run, cannot match.
# Usage: busybox awk -v seed=HEX -v off=BYTES -v len=BYTES -f pattern.awk
# The guest (busybox) and the host (busybox-static) run the same awk.
BEGIN {
	for (i = 0; i < len; i += 64)
		printf "%-63s\n", sprintf("vhu seed=%s at=%d", seed, off + i)
}
