#!/usr/bin/env bash
# Usage: extract-vmlinux.sh BZIMAGE OUT
# Write the uncompressed ELF kernel inside an x86 bzImage to OUT.
#
# A bzImage is a boot stub followed by the compressed kernel; nothing in the
# header says where the payload starts, so try every offset where a known
# compressor's magic appears and keep the first one that decompresses to an
# ELF file. TCG boots the ELF directly (PVH entry), which skips the
# decompressor running in emulated code. Exit 1 if no payload is found.
set -euo pipefail

in=$1 out=$2
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT

# magic (as a grep -P byte pattern) and the command that decompresses stdin
formats=(
	'\x02\x21\x4c\x18|lz4 -dc'
	'\xfd\x37\x7a\x58\x5a\x00|xz -dc'
	'\x28\xb5\x2f\xfd|zstd -dc'
	'\x1f\x8b\x08|gzip -dc'
	'\x42\x5a\x68|bzip2 -dc'
	'\x5d\x00\x00\x00|xz -dc --format=lzma'
)

is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

for f in "${formats[@]}"; do
	magic=${f%%|*} cmd=${f#*|}
	command -v "${cmd%% *}" >/dev/null || continue
	for off in $(LC_ALL=C grep -obUaP "$magic" "$in" | cut -d: -f1); do
		# Trailing bytes after the stream make some decompressors complain;
		# the ELF check below is what decides.
		tail -c +$((off + 1)) "$in" | $cmd >"$tmp" 2>/dev/null || true
		if [ -s "$tmp" ] && is_elf "$tmp"; then
			mv "$tmp" "$out"
			echo "extract-vmlinux: ${cmd%% *} payload at offset $off" >&2
			exit 0
		fi
	done
done
echo "extract-vmlinux: no compressed ELF kernel found in $in" >&2
exit 1
