#!/bin/sh
# Build (once) a Debian bookworm arm64 root that runs an rpi bundle under qemu-user emulation.
# Usage: sudo bench/aarch64/build_root.sh [ROOT]   (default: $C3AE_ARM64_ROOT or /var/cache/c3ae-edge/arm64-root)
# Needs root, a Debian mirror (this machine's apt sources, or C3AE_DEBIAN_MIRROR) and the pip index, and about 5
# minutes on an idle 2-core machine (the second stage runs emulated; 20-40 minutes when the machine is loaded).
# The root is built in ROOT.partial and renamed to ROOT only when complete, so an existing ROOT is always usable.
set -eu
ROOT=${1:-${C3AE_ARM64_ROOT:-/var/cache/c3ae-edge/arm64-root}}
# the Debian mirror this machine's apt already uses (deb822 "URIs:" or a one-line "deb URL bookworm main" source)
apt_mirror() {
    { sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null
      sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\/debian\)\/*[[:space:]].*/\2/p' \
          /etc/apt/sources.list 2>/dev/null; } | head -n 1
}
MIRROR=${C3AE_DEBIAN_MIRROR:-$(apt_mirror)}
[ -n "$MIRROR" ] || { echo "build_root.sh: no Debian mirror in /etc/apt/sources*: set C3AE_DEBIAN_MIRROR" >&2; exit 2; }
LITERT=${C3AE_LITERT_VERSION:-2.3.0}
PART="$ROOT.partial"
log() { echo "[build_root $(date -u +%H:%M:%S)] $*"; }

if [ -f "$ROOT/.c3ae-arm64-root" ]; then
    CPUINFO=${C3AE_CPUINFO_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/reference}
    mkdir -p "$ROOT/etc/c3ae-cpuinfo" && cp "$CPUINFO"/cpuinfo-rpi[45].txt "$ROOT/etc/c3ae-cpuinfo/"
    log "$ROOT is already built"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build_root.sh: must run as root (debootstrap, chroot)" >&2; exit 2; }

need=""
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v qemu-aarch64-static >/dev/null || need="$need qemu-user-static"
command -v update-binfmts >/dev/null || need="$need binfmt-support"
if [ -n "$need" ]; then
    log "installing$need"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
# binfmt_misc lets the kernel hand aarch64 ELF files to qemu-aarch64-static (flag F: works inside chroot).
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

START=$(date +%s)
mkdir -p "$(dirname "$ROOT")"
if [ -x "$PART/usr/bin/python3" ] && [ ! -e "$PART/debootstrap" ]; then
    log "$PART: second stage already complete, going on from there"  # an earlier run stopped later on
else
    rm -rf "$PART"
    log "first stage (host): debootstrap --foreign bookworm arm64 into $PART"
    debootstrap --arch=arm64 --variant=minbase --foreign \
        --include=python3,python3-venv,libstdc++6 bookworm "$PART" "$MIRROR"
    log "second stage (emulated, ~20 min)"
    unshare --mount --propagation private chroot "$PART" /debootstrap/debootstrap --second-stage
    log "second stage done after $(( $(date +%s) - START )) s"
fi

# Wheels come from PyPI on the host (fast); pip inside the root installs them offline (emulated).
W="$PART/opt/wheels"
mkdir -p "$W/tflite-runtime" "$W/ai-edge-litert"
# pip matches --platform tags exactly: tflite-runtime 2.14.0 is manylinux_2_34, ai-edge-litert 2.3.0 manylinux_2_27
TAGS=""
for t in 2_17 2_24 2_26 2_27 2_28 2_31 2_34 2_35 2_36; do TAGS="$TAGS --platform manylinux_${t}_aarch64"; done
dl() { python3 -m pip download -q --only-binary=:all: $TAGS --platform manylinux2014_aarch64 \
         --python-version 3.11 --implementation cp -d "$@"; }
dl "$W/tflite-runtime" "numpy<2" tflite-runtime==2.14.0 Pillow
dl "$W/ai-edge-litert" "ai-edge-litert==$LITERT" numpy Pillow
for v in tflite-runtime ai-edge-litert; do
    log "venv /opt/$v"
    case $v in
        tflite-runtime) pkgs='"numpy<2" tflite-runtime==2.14.0 Pillow' ;;  # quoted: the shells below would read <2 as a redirect
        *) pkgs="ai-edge-litert==$LITERT numpy Pillow" ;;
    esac
    unshare --mount --propagation private sh -c "mount -t proc proc '$PART/proc' && \
        chroot '$PART' sh -c 'python3 -m venv /opt/$v && /opt/$v/bin/pip install -q --no-index \
            --find-links /opt/wheels/$v $pkgs'"
done
# the Pi cpuinfo files each emulated run binds over /proc/cpuinfo (c3ae_edge/export/arm64.py reads them here)
CPUINFO=${C3AE_CPUINFO_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/reference}
mkdir -p "$PART/etc/c3ae-cpuinfo"
cp "$CPUINFO/cpuinfo-rpi4.txt" "$CPUINFO/cpuinfo-rpi5.txt" "$PART/etc/c3ae-cpuinfo/"
chroot "$PART" sh -c 'for v in /opt/tflite-runtime /opt/ai-edge-litert; do $v/bin/pip freeze | sed "s|^|$v: |"; done' \
    > "$PART/.c3ae-arm64-root.tmp"
mv "$PART/.c3ae-arm64-root.tmp" "$PART/.c3ae-arm64-root"
rm -rf "$ROOT"
mv "$PART" "$ROOT"
log "built $ROOT in $(( $(date +%s) - START )) s"
cat "$ROOT/.c3ae-arm64-root"
