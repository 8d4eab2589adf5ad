#!/usr/bin/env bash
# Install the Debian packages vhu needs, only those missing (idempotent).
# Usage: tools/setup-deps.sh build|test
set -euo pipefail

build_pkgs=(gcc libc6-dev meson ninja-build pkg-config liburing-dev)
test_pkgs=(libcriterion-dev qemu-system-common python3 clang libclang-rt-dev gnuplot-nox doxygen)
# tests/guest: QEMU, what the guest's initramfs holds, what builds it. The
# guest's kernel is unpacked below, not installed.
test_pkgs+=(qemu-system-x86 qemu-utils busybox-static fio cpio kmod lz4 xz-utils)

case "${1:-build}" in
build) want=("${build_pkgs[@]}") ;;
test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
*) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The test guest's kernel (tests/guest/build-initramfs.sh): Debian's cloud
# kernel, unpacked into $guest_kernel rather than installed, so that the host's
# boot loader never offers it; fetched only if missing.
guest_kernel=/var/cache/vhu/guest-kernel
if [ "${1:-build}" = test ] && ! ls "$guest_kernel"/boot/vmlinuz-* >/dev/null 2>&1; then
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	if [ -z "$pkg" ]; then
		apt-get update -qq
		pkg=$(apt-cache depends linux-image-cloud-amd64 |
			sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	fi
	[ -n "$pkg" ] || { echo "setup-deps: no linux-image-cloud-amd64 in apt" >&2; exit 1; }
	echo "setup-deps: unpacking $pkg into $guest_kernel" >&2
	tmp=$(mktemp -d)
	chmod 755 "$tmp" # apt-get download writes as _apt
	(cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
	rm -rf "$guest_kernel.tmp"
	mkdir -p "$guest_kernel.tmp"
	dpkg-deb -x "$tmp"/*.deb "$guest_kernel.tmp"
	rm -rf "$tmp"
	# the package leaves modules.dep to its postinst; modinfo needs it
	depmod -b "$guest_kernel.tmp" "${pkg#linux-image-}"
	rm -rf "$guest_kernel"
	mv "$guest_kernel.tmp" "$guest_kernel"
fi
