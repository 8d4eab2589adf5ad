#!/usr/bin/env bash
# Usage: build-initramfs.sh OUTDIR
# Build what the test guest boots, into OUTDIR:
#   kernel      the Debian kernel, uncompressed ELF if it can be extracted
#               (faster under TCG), else the bzImage as it is
#   base.cpio   busybox-static, the virtio modules, the /init and pattern.awk
#               of this directory
#   full.cpio   base.cpio followed by fio and the libraries it links
#               (the kernel unpacks concatenated cpio archives in turn)
#   key         what they were built from; a rerun with the same key does nothing
# Kernel: the newest ROOT/boot/vmlinuz-*-cloud-amd64, else ROOT/boot/vmlinuz-*,
# with its modules in ROOT/lib/modules/VERSION; ROOT is $VHU_GUEST_KERNEL_ROOT,
# else /var/cache/vhu/guest-kernel (tools/setup-deps.sh test unpacks Debian's
# cloud kernel there), else / (installed kernels).
set -euo pipefail

out=${1:?usage: build-initramfs.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Modules the guest needs, leaves only; their dependencies are added below.
want_modules=(virtio_pci virtio_blk)

die() { echo "build-initramfs: $*" >&2; exit 1; }

kernel=
for kroot in ${VHU_GUEST_KERNEL_ROOT:-/var/cache/vhu/guest-kernel /}; do
	kernel=$(ls "$kroot"/boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1)
	[ -n "$kernel" ] || kernel=$(ls "$kroot"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
	[ -n "$kernel" ] && break
done
[ -n "$kernel" ] && [ -r "$kernel" ] ||
	die "no readable kernel (run tools/setup-deps.sh test, or set VHU_GUEST_KERNEL_ROOT)"
kver=${kernel##*/vmlinuz-}
[ -f "$kroot/lib/modules/$kver/modules.dep" ] || die "no $kroot/lib/modules/$kver/modules.dep for $kernel"
for p in busybox fio cpio ldd modinfo; do
	command -v "$p" >/dev/null || die "$p not found (tools/setup-deps.sh test)"
done
busybox=$(command -v busybox)
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is not static (install busybox-static)"
fio=$(command -v fio)

exec 9>"$out/.lock"
flock 9

key=$(
	cat "$here/build-initramfs.sh" "$here/init" "$here/pattern.awk" "$here/extract-vmlinux.sh" | sha256sum
	stat -L -c '%n %s %Y' "$kernel" "$busybox" "$fio" $(ldd "$fio" | awk '$2 == "=>" { print $3 }')
)
key=$(echo "$key" | sha256sum | cut -d' ' -f1)
if [ -f "$out/key" ] && [ "$(cat "$out/key")" = "$key" ] &&
	[ -f "$out/kernel" ] && [ -f "$out/base.cpio" ] && [ -f "$out/full.cpio" ]; then
	exit 0
fi

t0=$(date +%s.%N)
rm -f "$out/key"
work=$out/work
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# Kernel
if bash "$here/extract-vmlinux.sh" "$kernel" "$work/kernel"; then
	kind=vmlinux
else
	cp "$kernel" "$work/kernel"
	kind=bzImage
fi

# Modules in load order: each after the modules it depends on.
order=()
add_module() {
	local m=$1 d f
	for d in "${order[@]}"; do [ "$d" = "$m" ] && return 0; done
	f=$(modinfo -b "$kroot" -k "$kver" -F filename "$m") || die "module $m not found for $kver"
	case $f in
	'(builtin)' | builtin*) return 0 ;;
	esac
	for d in $(modinfo -b "$kroot" -k "$kver" -F depends "$m" | tr ',' ' '); do
		add_module "$d"
	done
	for d in "${order[@]}"; do [ "$d" = "$m" ] && return 0; done
	order+=("$m")
	case $f in
	*.ko.xz) xz -dc "$f" >"$base/lib/modules/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$base/lib/modules/$m.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$base/lib/modules/$m.ko" ;;
	*) cp "$f" "$base/lib/modules/$m.ko" ;;
	esac
}

mkcpio() { # dir file
	(cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"
}

base=$work/base
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$base/bin/busybox"
cp "$here/init" "$base/init"
cp "$here/pattern.awk" "$base/pattern.awk"
chmod 755 "$base/init"
for m in "${want_modules[@]}"; do add_module "$m"; done
echo "${order[*]}" >"$base/lib/modules/vhu-order"
mkcpio "$base" "$work/base.cpio"

# fio and every library it links, each at the path ldd found it at, plus a
# loader cache so the guest's ld.so finds them without the host's.
full=$work/fio
mkdir -p "$full/usr/bin" "$full/etc"
cp "$fio" "$full/usr/bin/fio"
for lib in $(ldd "$fio" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
	mkdir -p "$full$(dirname "$lib")"
	cp -L "$lib" "$full$lib"
done
find "$full" -name '*.so*' -printf '/%P\n' | xargs -n1 dirname | sort -u >"$full/etc/ld.so.conf"
ldconfig -r "$full" 2>/dev/null || true
mkcpio "$full" "$work/fio.cpio"
cat "$work/base.cpio" "$work/fio.cpio" >"$work/full.cpio"

mv "$work/kernel" "$out/kernel"
mv "$work/base.cpio" "$out/base.cpio"
mv "$work/full.cpio" "$out/full.cpio"
cat >"$out/info" <<EOF
kernel $kernel ($kind)
modules ${order[*]}
base.cpio $(stat -c %s "$out/base.cpio") bytes
full.cpio $(stat -c %s "$out/full.cpio") bytes
EOF
echo "$key" >"$out/key"
awk -v k="$kind" -v v="$kver" -v m="${order[*]}" -v a="$t0" -v b="$(date +%s.%N)" \
	'BEGIN { printf "build-initramfs: %s kernel %s, modules %s; built in %.1f s\n", k, v, m, b - a }' >&2
