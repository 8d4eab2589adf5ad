#!/usr/bin/env bash
# Install the Debian packages vhu needs, only those missing (idempotent).
# Usage: tools/setup-deps.sh build|test
set -euo pipefail

build_pkgs=(gcc libc6-dev meson ninja-build pkg-config liburing-dev)
test_pkgs=(libcriterion-dev qemu-system-common python3 clang libclang-rt-dev gnuplot-nox doxygen)

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
