#!/bin/sh
# Downloads a pretrained VGG-19, verifies it, and converts it to weights/vgg19.nstw (where the nst CLI
# looks by default). See weights/README.md for what each source means for results.
#
#   weights/fetch.sh [caffe|torchvision|gatys] [--file PATH] [--half] [--all]
#
#   caffe        VGG_ILSVRC_19_layers.caffemodel, 548 MB (default: the weights Gatys et al. and
#                jcjohnson/neural-style used)
#   torchvision  vgg19-dcbb9e9d.pth, 548 MB (PyTorch's own training; different results)
#   gatys        vgg_conv.pth, 80 MB (the Caffe weights as Gatys' PyTorch code ships them)
#   --file PATH  use a file you downloaded elsewhere instead of downloading
#   --half       store f16 (half the size)        --all   keep conv5_2..conv5_4 too
#   --out PATH   write PATH instead of weights/vgg19.nstw
#
# Without network it stops within ~15 s and says how to place a manually downloaded file.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source=caffe
file=""
out="$here/vgg19.nstw"
convert_flags=""
while [ $# -gt 0 ]; do
    case "$1" in
        caffe|torchvision|gatys) source=$1 ;;
        --file) shift; [ $# -gt 0 ] || { echo "fetch.sh: --file needs a path" >&2; exit 2; }; file=$1 ;;
        --half) convert_flags="$convert_flags --half" ;;
        --all) convert_flags="$convert_flags --all" ;;
        --out) shift; [ $# -gt 0 ] || { echo "fetch.sh: --out needs a path" >&2; exit 2; }; out=$1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "fetch.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$source" in
    caffe)
        name=VGG_ILSVRC_19_layers.caffemodel
        url=http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_19_layers.caffemodel ;;
    torchvision)
        name=vgg19-dcbb9e9d.pth
        url=https://download.pytorch.org/models/vgg19-dcbb9e9d.pth ;;
    gatys)
        name=vgg_conv.pth
        url=https://bethgelab.org/media/uploads/pytorch_models/vgg_conv.pth ;;
esac
dest="$here/$name"

manual() {
    echo "" >&2
    echo "To install it by hand: download" >&2
    echo "    $url" >&2
    echo "on a machine with network access, copy it to $dest (or anywhere), and run" >&2
    echo "    weights/fetch.sh $source --file /path/to/$name" >&2
    echo "(or convert it yourself: build/nst-convert /path/to/$name weights/vgg19.nstw)" >&2
}

# ---- 1. the file: given, already here, or downloaded ----------------------------------------------
if [ -n "$file" ]; then
    [ -f "$file" ] || { echo "fetch.sh: no such file: $file" >&2; exit 1; }
elif [ -f "$dest" ]; then
    file=$dest
    echo "fetch.sh: using $dest (already downloaded)"
else
    if command -v curl >/dev/null 2>&1; then
        probe() { curl -sSfIL --connect-timeout 8 --max-time 15 -o /dev/null "$url"; }
        fetch() { curl -fL --connect-timeout 15 --max-time 7200 --retry 2 --progress-bar -o "$dest.part" "$url"; }
    elif command -v wget >/dev/null 2>&1; then
        probe() { wget -q --spider --timeout=8 --tries=1 "$url"; }
        fetch() { wget --timeout=30 --tries=3 -O "$dest.part" "$url"; }
    else
        echo "fetch.sh: neither curl nor wget is installed." >&2
        manual; exit 1
    fi
    echo "fetch.sh: checking $url"
    if ! probe; then
        echo "fetch.sh: cannot reach $url (no network, a proxy, or the server is down)." >&2
        manual; exit 1
    fi
    echo "fetch.sh: downloading $name (about 550 MB for caffe/torchvision, 80 MB for gatys)"
    if ! fetch; then
        rm -f "$dest.part"
        echo "fetch.sh: the download failed." >&2
        manual; exit 1
    fi
    mv "$dest.part" "$dest"
    file=$dest
fi

# ---- 2. verify against weights/SHA256SUMS -----------------------------------------------------------
base=$(basename "$file")
sha=""
if command -v sha256sum >/dev/null 2>&1; then sha=$(sha256sum "$file" | cut -d' ' -f1)
elif command -v shasum >/dev/null 2>&1; then sha=$(shasum -a 256 "$file" | cut -d' ' -f1)
fi
checked=0
while read -r kind hex fname; do
    case "$kind" in ''|\#*) continue ;; esac
    [ "$fname" = "$name" ] || [ "$fname" = "$base" ] || continue
    case "$kind" in
        sha256)
            [ -n "$sha" ] || { echo "fetch.sh: no sha256sum/shasum to verify with" >&2; exit 1; }
            case "$sha" in
                "$hex"*) if [ ${#hex} -eq 64 ]; then echo "fetch.sh: SHA-256 ok"
                         else echo "fetch.sh: SHA-256 starts with the published $hex (only ${#hex} of 64 digits are published)"; fi
                         checked=1 ;;
                *) echo "fetch.sh: SHA-256 MISMATCH for $file: got $sha, expected $hex..." >&2
                   echo "  The file is corrupted or not the published one; delete it and download again." >&2
                   exit 1 ;;
            esac ;;
        md5)
            md5=$(md5sum "$file" 2>/dev/null | cut -d' ' -f1)
            [ "$md5" = "$hex" ] || { echo "fetch.sh: MD5 MISMATCH for $file: got $md5, expected $hex" >&2; exit 1; }
            echo "fetch.sh: MD5 ok"; checked=1 ;;
    esac
done < "$here/SHA256SUMS"
if [ "$checked" = 0 ]; then
    echo "fetch.sh: warning: no published checksum for $name; its SHA-256 is"
    echo "    ${sha:-(sha256sum not available)}"
    echo "  compare it with a trusted copy if you can (the converter still checks the format and shapes)."
fi

# ---- 3. convert -----------------------------------------------------------------------------------
conv="$root/build/nst-convert"
if [ ! -x "$conv" ]; then
    echo "fetch.sh: building nst-convert"
    (cd "$root" && make build/nst-convert) || { echo "fetch.sh: cannot build build/nst-convert (run make)" >&2; exit 1; }
fi
# shellcheck disable=SC2086
"$conv" "$file" "$out" $convert_flags || { echo "fetch.sh: conversion failed" >&2; exit 1; }
echo "fetch.sh: done: $out (the nst CLI uses it by default; or set NST_WEIGHTS=$out)"
