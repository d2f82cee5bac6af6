#!/usr/bin/env bash
# Installs what the Delos build needs, idempotently: Debian packages for QEMU and GRUB ISOs, and
# the nightly toolchain's rust-src (for -Z build-std). Quick when everything is present. As a
# non-root user it prints the exact commands instead of running them, and fails.
set -euo pipefail

PKGS=(qemu-system-x86 grub-pc-bin grub-common xorriso mtools gdb gcc binutils)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "[setup] installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
    else
        echo "[setup] missing Debian packages: ${missing[*]}; run as root:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "[setup] installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "[setup] adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly
fi
echo "[setup] ok: $(rustc +nightly -V), $(qemu-system-x86_64 --version | head -1)"
