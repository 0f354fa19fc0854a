#!/bin/sh
# pull.sh: pull a signed c3ae-edge release from a static index (`c3ae-edge publish --to DIR`, served over http(s)
# or file://) with nothing but curl, sha256sum, minisign and POSIX sh/awk. No Python.
#
#   sh pull.sh BASE_URL MODEL[:VERSION] TARGET PUBKEY_FILE OUT_DIR
#
# VERSION: exact as published (0.1.0), or omitted / "latest" for the newest. The bundle lands in OUT_DIR/MODEL-TARGET/
# only after index.txt's signature, SHA256SUMS's signature and trusted comment, and every file's sha256 checked out.
# A newer installed version is kept unless ALLOW_DOWNGRADE=1.
set -eu

die() { echo "pull.sh: error: $*" >&2; exit 1; }
[ "$#" -eq 5 ] || die "usage: pull.sh BASE_URL MODEL[:VERSION] TARGET PUBKEY_FILE OUT_DIR"
for tool in curl sha256sum minisign awk; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
base=${1%/}; model=${2%%:*}; version=; target=$3; pub=$4; out=$5
case "$2" in *:*) version=${2#*:} ;; esac
[ "$version" = latest ] && version=
[ -r "$pub" ] || die "$pub: cannot read the public key"
safe() { case "$1" in ""|.*|*[!A-Za-z0-9._+-]*) die "refusing name '$1' (not a plain file name)" ;; esac; }
safe "$model"; safe "$target"

mkdir -p "$out"
tmp="$out/.pull-sh-$model-$target.$$.tmp"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
mkdir "$tmp"
fetch() { curl -fsSL --proto '=http,https,file' --retry 2 -o "$2" "$1" || die "$1: download failed"; }

fetch "$base/index.txt" "$tmp/index.txt"
fetch "$base/index.txt.minisig" "$tmp/index.txt.minisig"
minisign -Vq -p "$pub" -m "$tmp/index.txt" -x "$tmp/index.txt.minisig" || die "$base/index.txt: signature check failed (wrong key or tampered index)"
line=$(awk -v m="$model" -v t="$target" -v v="$version" '$1 == m && $3 == t && (v == "" || $2 == v) { l = $0 } END { print l }' "$tmp/index.txt")
[ -n "$line" ] || die "$base: no release of $model${version:+ $version} for target $target"
set -- $line
version=$2; folder=$4; sums_sha=$5
safe "$folder"

b="$tmp/$folder"
mkdir "$b"
fetch "$base/$folder/SHA256SUMS" "$b/SHA256SUMS"
fetch "$base/$folder/SHA256SUMS.minisig" "$b/SHA256SUMS.minisig"
[ "$(sha256sum < "$b/SHA256SUMS" | awk '{ print $1 }')" = "$sums_sha" ] || die "$folder/SHA256SUMS is not the one index.txt lists (tampered)"
tc=$(minisign -V -Q -p "$pub" -m "$b/SHA256SUMS" -x "$b/SHA256SUMS.minisig") || die "$folder/SHA256SUMS: signature check failed"
tab=$(printf '\t')
case "$tc" in
    "model:$model${tab}version:$version${tab}target:$target${tab}"*) ;;
    *) die "$folder: signed for '$tc', not $model $version $target" ;;
esac
awk '{ print $2 }' "$b/SHA256SUMS" > "$tmp/names"
while IFS= read -r name; do
    safe "$name"
    fetch "$base/$folder/$name" "$b/$name"
done < "$tmp/names"
(cd "$b" && sha256sum -c SHA256SUMS >/dev/null) || die "$folder: sha256 mismatch (tampered or truncated download)"

# one installer at a time (mkdir is atomic); a lock left by a killed run is reported, not broken
lock="$out/.pull-sh.lock"
n=0
until mkdir "$lock" 2>/dev/null; do
    n=$((n + 1))
    [ "$n" -lt 300 ] || die "$lock: held for 300 s by another pull (remove it if no pull is running)"
    sleep 1
done
cleanup() { rm -rf "$tmp" "$lock"; }

# newer version already installed? (its own signed trusted comment says which)
final="$out/$model-$target"
vgt() { awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, "."); m = split(b, y, "."); k = n > m ? n : m
    for (i = 1; i <= k; i++) { if (x[i] + 0 > y[i] + 0) exit 0; if (x[i] + 0 < y[i] + 0) exit 1 } exit 1 }'; }
if [ -f "$final/SHA256SUMS.minisig" ] && [ "${ALLOW_DOWNGRADE:-0}" != 1 ]; then
    old=$(minisign -V -Q -p "$pub" -m "$final/SHA256SUMS" -x "$final/SHA256SUMS.minisig" 2>/dev/null | awk -F '\t' '{ for (i = 1; i <= NF; i++) if ($i ~ /^version:/) print substr($i, 9) }') || old=
    if [ -n "$old" ] && vgt "$old" "$version"; then
        die "$final holds $model $old, newer than $version: refusing to downgrade (ALLOW_DOWNGRADE=1)"
    fi
fi
if [ -e "$final" ]; then
    mv "$final" "$tmp/old"
fi
mv "$b" "$final"
cleanup
echo "pulled $model $version $target -> $final (signature and $(wc -l < "$final/SHA256SUMS" | tr -d ' ') digests OK)"
