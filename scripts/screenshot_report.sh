#!/usr/bin/env bash
# Render an auditor report.html in headless Chromium (offline) and save a PNG screenshot.
#
#   scripts/screenshot_report.sh REPORT_DIR/report.html docs/report-screenshot.png [WIDTH,HEIGHT]
#
# Needs Debian's chromium (apt-get update && apt-get install -y chromium). The page is opened from
# a file:// URL with networking switched off: report.html is self-contained (inline CSS, images as
# data URIs, no script), so what you see is what a reviewer sees offline. Exit 1 if the page does
# not show a verdict.
set -euo pipefail

page=${1:?usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]}
out=${2:?usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]}
size=${3:-1200,2000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "chromium not found: apt-get update && apt-get install -y chromium" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
url="file://$(realpath "$page")"
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --hide-scrollbars "--user-data-dir=$profile")

# the verdict must be in the rendered DOM
if ! "$browser" "${flags[@]}" --dump-dom "$url" 2>/dev/null | grep -q 'data-verdict="'; then
  echo "no verdict in the rendered page: $page" >&2
  exit 1
fi
"$browser" "${flags[@]}" "--screenshot=$(realpath -m "$out")" "--window-size=$size" "$url" 2>/dev/null
echo "wrote $out"
