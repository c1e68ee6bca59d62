#!/usr/bin/env bash
# The Debian package end to end: builds the .deb from the release binary already built
# (`cargo deb --no-build`; CI's `cargo test --release` built it), installs it with
# `dpkg -i`, and runs the installed /usr/bin/blindface from outside the source tree with an
# empty HOME: `doctor` must find ONNX Runtime in /usr/lib/blindface/ and the models in
# /usr/share/blindface/models/ (not a build or user-cache copy), and `detect` must find the
# three faces of a fixture photo. Removes the package again, unless it was installed before
# or KEEP_INSTALLED=1.
#
#   scripts/deb-check.sh        (needs cargo-deb, dpkg-dev, root or sudo; DEB=FILE skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "deb-check: $*" >&2
    exit 1
}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if [ -z "${DEB:-}" ]; then
    [ -x target/release/blindface ] || fail "no target/release/blindface: cargo build --release first"
    [ -f target/release/libonnxruntime.so.1.31.1 ] ||
        fail "no target/release/libonnxruntime.so.1.31.1: build.rs could not provision ONNX Runtime"
    cargo deb --version >/dev/null 2>&1 || fail "cargo-deb missing: cargo install cargo-deb --locked"
    DEB=$(cargo deb --no-build --quiet)
fi
[ -f "$DEB" ] || fail "no package at '$DEB'"
echo "deb-check: $DEB ($(du -k "$DEB" | cut -f1) KiB)"

# What the package holds.
contents=$(dpkg-deb --contents "$DEB")
for want in ./usr/bin/blindface ./usr/lib/blindface/libonnxruntime.so.1.31.1 \
    ./usr/share/blindface/models/face_detection_yunet_2023mar.onnx \
    ./usr/share/blindface/models/face_recognition_sface_2021dec.onnx \
    ./usr/share/applications/blindface.desktop \
    ./usr/share/icons/hicolor/scalable/apps/blindface.svg \
    ./usr/share/doc/blindface/onnxruntime/LICENSE; do
    grep -q " $want\$" <<<"$contents" || fail "$DEB lacks $want"
done
dpkg-deb --field "$DEB" Package Version Architecture Depends Recommends Installed-Size

installed_before=0
dpkg -s blindface >/dev/null 2>&1 && installed_before=1
$sudo dpkg -i "$DEB"
cleanup() {
    if [ "$installed_before" -eq 0 ] && [ "${KEEP_INSTALLED:-0}" != 1 ]; then
        $sudo dpkg -r blindface >/dev/null || true
    fi
    rm -rf "$tmp"
}
tmp=$(mktemp -d)
trap cleanup EXIT
cp tests/fixtures/faces/obama_and_biden.jpg "$tmp/photo.jpg"
mkdir -p "$tmp/home"

# From outside the source tree, with nothing in HOME and no overrides.
run() {
    (cd "$tmp" && env -i PATH=/usr/bin:/bin HOME="$tmp/home" /usr/bin/blindface "$@")
}
run doctor
run doctor --json >"$tmp/doctor.json"
python3 - "$tmp/doctor.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ort, models = d["onnxruntime"], d["models"]
checks = {
    "runtime path": ort["found"] == "/usr/lib/blindface/libonnxruntime.so.1.31.1",
    "runtime source": ort["source"] == "installed layout",
    "runtime pinned": ort["matches_pin"] is True,
    "runtime loads": ort["loads"] is True,
    "models dir": models["dir"] == "/usr/share/blindface/models",
    "models source": models["source"] == "installed layout",
    "models verified": all(f["ok"] for f in models["files"]),
    "doctor ok": d["ok"] is True,
}
bad = [k for k, ok in checks.items() if not ok]
if bad:
    sys.exit("deb-check: doctor: " + ", ".join(bad) + "\n" + json.dumps(d, indent=2))
PY
run detect photo.jpg
faces=$(run detect --json photo.jpg | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["faces"]))')
[ "$faces" = 3 ] || fail "installed blindface found $faces faces in obama_and_biden.jpg, want 3"
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate /usr/share/applications/blindface.desktop
fi
echo "deb-check: installed package finds its runtime and models, detects 3 faces"
