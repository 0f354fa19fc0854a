#!/bin/sh
# pull.sh: pull a signed c3ae-edge release from a static index (`c3ae-edge publish --to DIR`, served over http(s),
# or the folder itself) with nothing but curl, sha256sum, minisign and POSIX sh/awk. No Python.
#
#   sh pull.sh BASE MODEL[:VERSION] TARGET PUBKEY_FILE OUT_DIR
#
# BASE: an http(s):// or file:// URL of the index, or a folder holding index.txt. VERSION: exact as published
# (0.1.0), or omitted / "latest" for the newest release (pre-releases such as 0.2.0rc1 only with PRE=1).
# The bundle lands in OUT_DIR/MODEL-TARGET/ only after index.txt's signature, serial and expiry, SHA256SUMS's
# signature and trusted comment, and every file's sha256 checked out. Like `c3ae-edge pull`, it remembers the highest
# index serial seen per store and key (in $C3AE_STATE_DIR, else $XDG_STATE_HOME/c3ae-edge, else
# ~/.local/state/c3ae-edge) and refuses a lower one; an expired index needs ALLOW_EXPIRED=1; a newer installed
# version is kept unless ALLOW_DOWNGRADE=1; a folder it did not make, or one holding files it did not write, is
# never replaced (FORCE=1 replaces the latter). Downloads are capped at the sizes the signed index gives.
set -eu

die() { echo "pull.sh: error: $*" >&2; exit 1; }
[ "$#" -eq 5 ] || die "usage: pull.sh BASE_URL_OR_FOLDER MODEL[:VERSION] TARGET PUBKEY_FILE OUT_DIR"
for tool in curl sha256sum minisign awk head wc; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
base=${1%/}; model=${2%%:*}; version=; target=$3; pub=$4; out=$5
case "$2" in *:*) version=${2#*:} ;; esac
[ "$version" = latest ] && version=
case "$base" in
    http://*|https://*|file://*) ;;
    *://*) die "$base: not an http(s):// or file:// URL, nor a folder" ;;
    *) [ -f "$base/index.txt" ] || die "$base: no index.txt here (a folder written by c3ae-edge publish, or a URL)"
       base="file://$(cd "$base" && pwd -P)" ;;
esac
[ -r "$pub" ] || die "$pub: cannot read the public key"
safe() { case "$1" in ""|.*|*[!A-Za-z0-9._+-]*) die "refusing name '$1' (not a plain file name)" ;; esac; }
safe "$model"; safe "$target"

made_out=
[ -d "$out" ] || made_out=1
mkdir -p "$out"
tmp="$out/.pull-sh-$model-$target.$$.tmp"
cleanup() { rm -rf "$tmp"; if [ -n "$made_out" ]; then rmdir "$out" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
mkdir "$tmp"
# fetch URL DEST LIMIT: at most LIMIT bytes (an endless or oversized reply is cut and refused)
fetch() {
    { curl -fsSL --proto '=http,https,file' --retry 2 --max-filesize "$3" "$1" || : > "$2.failed"; } \
        | head -c "$(($3 + 1))" > "$2"
    [ "$(wc -c < "$2")" -le "$3" ] || die "$1: larger than $3 bytes (refusing an endless or oversized download)"
    [ ! -e "$2.failed" ] || die "$1: download failed"
}
tc_field() { printf '%s\n' "$1" | awk -F '\t' -v k="$2" '{ for (i = 1; i <= NF; i++) if (index($i, k ":") == 1) print substr($i, length(k) + 2) }'; }

fetch "$base/index.txt" "$tmp/index.txt" 16777216
fetch "$base/index.txt.minisig" "$tmp/index.txt.minisig" 65536
itc=$(minisign -V -Q -p "$pub" -m "$tmp/index.txt" -x "$tmp/index.txt.minisig") || die "$base/index.txt: signature check failed (wrong key or tampered index)"

# rollback and freeze: the signed serial never goes down for this store and key; an expired index is refused
serial=$(tc_field "$itc" serial); expires=$(tc_field "$itc" expires)
case "$serial" in ""|*[!0-9]*) serial=0 ;; esac
now=$(awk 'BEGIN { srand(); print srand() }')
if [ "${ALLOW_EXPIRED:-0}" != 1 ]; then
    case "$expires" in ""|*[!0-9]*) die "$base/index.txt: no serial or expiry (re-sign it with c3ae-edge refresh, or ALLOW_EXPIRED=1)" ;; esac
    [ "$now" -le "$expires" ] || die "$base/index.txt: expired (a frozen store? re-sign it with c3ae-edge refresh, or ALLOW_EXPIRED=1)"
fi
if [ -n "${C3AE_STATE_DIR:-}" ]; then sdir=$C3AE_STATE_DIR
elif [ -n "${XDG_STATE_HOME:-}" ]; then sdir="$XDG_STATE_HOME/c3ae-edge"
elif [ -n "${HOME:-}" ]; then sdir="$HOME/.local/state/c3ae-edge"
else sdir=; fi
state=
if [ -n "$sdir" ]; then
    h=$(printf '%s\n%s\n' "$(awk 'NR == 2' "$pub")" "$base" | sha256sum | awk '{ print substr($1, 1, 16) }')
    state="$sdir/serial-$h"
    seen=0
    [ ! -f "$state" ] || seen=$(awk 'NR == 1 && $1 ~ /^[0-9]+$/ { print $1 }' "$state")
    [ "$serial" -ge "${seen:-0}" ] || die "$base/index.txt: serial $serial is lower than $seen, seen before from this store and key (a replayed old index: rollback refused)"
else
    echo "pull.sh: note: no HOME, XDG_STATE_HOME or C3AE_STATE_DIR: the index serial is not remembered" >&2
fi

line=$(awk -v m="$model" -v t="$target" -v v="$version" -v pre="${PRE:-0}" '
    $1 == m && $3 == t && (v == "" || $2 == v) { if (v == "" && pre != 1 && $2 ~ /[A-Za-z]/) next; l = $0 }
    END { print l }' "$tmp/index.txt")
hint=; [ -n "$version" ] || [ "${PRE:-0}" = 1 ] || hint=" (pre-releases only with PRE=1)"
[ -n "$line" ] || die "$base: no release of $model${version:+ $version} for target $target$hint"
set -- $line
version=$2; folder=$4; sums_sha=$5; total=${6:-1073741824}
safe "$folder"
case "$total" in ""|*[!0-9]*) die "$base/index.txt: size '$total' of $folder is not a number" ;; esac

b="$tmp/$folder"
mkdir "$b"
fetch "$base/$folder/SHA256SUMS" "$b/SHA256SUMS" 1048576
fetch "$base/$folder/SHA256SUMS.minisig" "$b/SHA256SUMS.minisig" 65536
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
    fetch "$base/$folder/$name" "$b/$name" "$total"
done < "$tmp/names"
(cd "$b" && sha256sum -c SHA256SUMS >/dev/null) || die "$folder: sha256 mismatch (tampered or truncated download)"
printf 'pulled %s from %s serial %s\n' "$folder" "$base" "$serial" > "$b/.c3ae-pull"

# one installer at a time (mkdir is atomic); a lock left by a killed run is reported, not broken
lock="$out/.pull-sh.lock"
n=0
until mkdir "$lock" 2>/dev/null; do
    n=$((n + 1))
    [ "$n" -lt 300 ] || die "$lock: held for 300 s by another pull (remove it if no pull is running)"
    sleep 1
done
cleanup() { rm -rf "$tmp" "$lock"; if [ -n "$made_out" ]; then rmdir "$out" 2>/dev/null || true; fi; }

final="$out/$model-$target"
if [ -e "$final" ] || [ -L "$final" ]; then
    # only a folder pull made (its marker), holding only what it wrote, is replaced
    [ -f "$final/.c3ae-pull" ] && [ ! -L "$final" ] || die "$final: exists and was not made by pull (no .c3ae-pull); refusing to replace it (move it away)"
    if [ "${FORCE:-0}" != 1 ]; then
        extra=$(cd "$final" && for f in * .[!.]*; do [ -e "$f" ] || continue
            case "$f" in SHA256SUMS|SHA256SUMS.minisig|.c3ae-pull) continue ;; esac
            awk -v f="$f" '$2 == f { found = 1 } END { exit !found }' SHA256SUMS 2>/dev/null || printf ' %s' "$f"; done)
        [ -n "$extra" ] || (cd "$final" && sha256sum -c SHA256SUMS >/dev/null 2>&1) || extra=" (edited files)"
        [ -z "$extra" ] || die "$final: holds files pull did not write:$extra; refusing to replace it (move them out, or FORCE=1 deletes them)"
    fi
fi
# newer version already installed? (its own signed trusted comment says which)
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
if [ -n "$state" ] && [ "$serial" -gt "${seen:-0}" ]; then
    mkdir -p "$sdir" && printf '%s\n' "$serial" > "$state.tmp.$$" && mv "$state.tmp.$$" "$state" || echo "pull.sh: note: could not record serial $serial in $state" >&2
fi
cleanup
echo "pulled $model $version $target -> $final (index serial $serial; signature and $(wc -l < "$final/SHA256SUMS" | tr -d ' ') digests OK)"
