#!/usr/bin/env bash
# Headless check of the desktop app: runs the real binary under Xvfb with a folder source,
# waits, screenshots the whole screen, and fails if the screenshot is uniform (nothing drawn).
#
#   scripts/screenshot.sh [OUT.png]        (default: assets/screenshot.png)
#
# Two people are enrolled first with the command line (same key, same built-in store), then
# the app runs in live mode on a photo of both with a stranger (`blindface app --live`):
# every face boxed and labelled with its name, decrypted distance and verdict colour.
# Needs: xvfb xauth imagemagick (apt), a release build (cargo build --release).
# Environment: BIN (binary), FACES (photos), WAIT (seconds before the shot, default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/blindface}
FACES=${FACES:-tests/fixtures/faces}
OUT=${1:-assets/screenshot.png}
WAIT=${WAIT:-30}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 2; }
command -v Xvfb >/dev/null || { echo "Xvfb missing: apt-get install xvfb xauth imagemagick" >&2; exit 2; }
command -v import >/dev/null || { echo "import missing: apt-get install imagemagick" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
# Keep the user's own key, settings and gallery out of it.
export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data"
mkdir -p "$HOME"
opts=(--key "$tmp/secret.key" --data "$tmp/store")

"$BIN" "${opts[@]}" keygen >/dev/null
"$BIN" "${opts[@]}" enrol --name "Barack Obama" "$FACES/obama.jpg"
"$BIN" "${opts[@]}" enrol --name "Joe Biden" "$FACES/biden.jpg"
mkdir -p "$tmp/probes"
cp "$FACES/obama_and_biden.jpg" "$tmp/probes/"

# A free display number.
n=${DISPLAY_NUM:-97}
while [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ]; do n=$((n + 1)); done
Xvfb ":$n" -screen 0 1400x860x24 -nolisten tcp >"$tmp/xvfb.log" 2>&1 &
pids+=($!)
sleep 2
DISPLAY=":$n" LIBGL_ALWAYS_SOFTWARE=1 "$BIN" "${opts[@]}" --source "$tmp/probes" app --live \
    >"$tmp/app.log" 2>&1 &
app=$!
pids+=($app)
sleep "$WAIT"
if ! kill -0 "$app" 2>/dev/null; then
    echo "the app exited early:" >&2
    cat "$tmp/app.log" >&2
    exit 1
fi
mkdir -p "$(dirname "$OUT")"
DISPLAY=":$n" import -window root "$OUT"
colors=$(convert "$OUT" -format %k info:)
echo "screenshot $OUT: $colors colours"
if [ "$colors" -lt 16 ]; then
    echo "the screenshot is (nearly) uniform: the app drew nothing" >&2
    cat "$tmp/app.log" >&2
    exit 1
fi
