#!/usr/bin/env bash
# Checks every ONNX Runtime pin in ort/onnxruntime.sha256 against PyPI, from this machine:
# for each pinned wheel, `pip download` with that wheel's own --platform, --python-version
# and --abi (what build.rs asks for, see src/ort_platform.rs) must fetch exactly that file
# with the pinned SHA-256, and the library pinned as `WHEEL/PATH` must be at PATH inside it
# with its pinned SHA-256. pip fetches macOS and Windows wheels on Linux fine; nothing here
# runs their libraries. That build.rs extracts exactly these paths is checked by the unit
# tests of src/ort_platform.rs (every supported target has both pins, no pin is unused).
# Also checks that ort/LICENSE and ort/ThirdPartyNotices.txt are the Linux wheels' own.
#
#   scripts/check-ort-pins.sh            (PYTHON=python3 by default; KEEP=DIR keeps the wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=${PINS:-ort/onnxruntime.sha256}
PY=${PYTHON:-python3}
tmp=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"

fail() {
    echo "check-ort-pins: $*" >&2
    exit 1
}

wheels=0
libs=0
while read -r hash file rest; do
    case "$hash" in '' | '#'*) continue ;; esac
    [ -z "$rest" ] || fail "malformed line: $hash $file $rest"
    case "$file" in *.whl) ;; *) continue ;; esac
    # onnxruntime-VERSION-cpXYZ-cpXYZ-PLATFORM.whl
    IFS=- read -r name version py abi platform <<<"${file%.whl}"
    [ "$name" = onnxruntime ] && [ "$py" = "$abi" ] && [ -n "$platform" ] ||
        fail "unexpected wheel name $file"
    digits=${py#cp}
    pyver="${digits:0:1}.${digits:1}"
    dir="$tmp/$platform-$version"
    mkdir -p "$dir"
    if [ ! -f "$dir/$file" ]; then
        "$PY" -m pip download "onnxruntime==$version" --no-deps --only-binary=:all: \
            --platform "$platform" --python-version "$pyver" --implementation cp --abi "$abi" \
            --disable-pip-version-check --retries 2 -q -d "$dir" ||
            fail "pip could not download $file"
    fi
    got_files=$(ls "$dir")
    [ "$got_files" = "$file" ] || fail "pip fetched '$got_files' instead of $file"
    actual=$(sha256sum "$dir/$file" | cut -d' ' -f1)
    [ "$actual" = "$hash" ] || fail "$file: SHA-256 $actual, pinned $hash"
    wheels=$((wheels + 1))

    # The library pin(s) of this wheel: `HASH  WHEEL/PATH-IN-WHEEL`.
    found=0
    while read -r lib_hash lib_entry; do
        path=${lib_entry#"$file/"}
        lib_actual=$("$PY" - "$dir/$file" "$path" <<'PY'
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    try:
        data = z.read(sys.argv[2])
    except KeyError:
        sys.exit(f"{sys.argv[2]} is not in {sys.argv[1]}")
print(hashlib.sha256(data).hexdigest(), len(data))
PY
        ) || fail "$file: no $path inside"
        [ "${lib_actual% *}" = "$lib_hash" ] ||
            fail "$file/$path: SHA-256 ${lib_actual% *}, pinned $lib_hash"
        echo "ok  $file  ->  $path (${lib_actual#* } bytes)"
        found=$((found + 1))
        libs=$((libs + 1))
    done < <(grep -F "  $file/" "$PINS" | grep -v '^#' || true)
    [ "$found" -eq 1 ] || fail "$file: $found library pins (want exactly 1)"

    # The Debian package ships ort/LICENSE and ort/ThirdPartyNotices.txt beside the Linux
    # library: they must be the Linux wheels' own.
    case "$platform" in
    manylinux*)
        for notice in LICENSE ThirdPartyNotices.txt; do
            "$PY" - "$dir/$file" "onnxruntime/$notice" "ort/$notice" <<'PY' ||
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    sys.exit(0 if z.read(sys.argv[2]) == open(sys.argv[3], "rb").read() else 1)
PY
                fail "ort/$notice differs from onnxruntime/$notice in $file"
        done
        ;;
    esac
done <"$PINS"

[ "$wheels" -gt 0 ] || fail "no wheels pinned in $PINS"
echo "check-ort-pins: $wheels wheels and $libs libraries match $PINS"
