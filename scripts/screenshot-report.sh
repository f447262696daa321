#!/usr/bin/env bash
# Renders an HTML report with headless Chromium and saves a PNG screenshot, to check that
# the page opens from disk with no server and every image shows.
#
#   scripts/screenshot-report.sh reports/index.html [out.png] [WIDTHxHEIGHT]
#
# Needs Debian/Ubuntu's chromium (`apt-get install -y chromium`) or google-chrome on PATH.
# Prints the screenshot path; the image count in the page is printed too, for a quick check
# against the number of charts.
set -euo pipefail
html=${1:?usage: $0 REPORT.html [OUT.png] [WIDTHxHEIGHT]}
out=${2:-${html%.html}.png}
size=${3:-1400x4000}
[[ -f "$html" ]] || { echo "error: no such file: $html" >&2; exit 1; }
browser=""
for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[[ -n "$browser" ]] || { echo "error: no chromium found; install it (apt-get install -y chromium)" >&2; exit 1; }
abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
out_abs=$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)/$(basename "$out")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --virtual-time-budget=10000 --user-data-dir="$profile" \
    --screenshot="$out_abs" --window-size="${size/x/,}" "file://$abs" >/dev/null 2>&1
[[ -s "$out_abs" ]] || { echo "error: $browser wrote no screenshot" >&2; exit 1; }
imgs=$(grep -o '<img ' "$html" | wc -l)
echo "screenshot: $out_abs ($imgs <img> in the page)"
