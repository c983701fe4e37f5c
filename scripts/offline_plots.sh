#!/usr/bin/env bash
# Make `dvc plots show` render offline: DVC's page loads vega from a CDN, which a machine
# without internet cannot reach (the page renders blank). This builds an HTML template with
# vega, vega-lite and vega-embed inlined (from the npm registry) and points DVC at it in
# .dvc/config.local (not committed). Best effort: without npm it says so and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
TEMPLATE=.dvc/plots/offline.html
# The versions dvc-render's own page asks for.
PACKAGES=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)

if [ -f "$TEMPLATE" ]; then exit 0; fi
if ! command -v npm >/dev/null; then
  echo "offline_plots: npm not found; dvc plots show will need internet to draw" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && npm pack --silent "${PACKAGES[@]}" >/dev/null 2>&1); then
  echo "offline_plots: npm registry unreachable; dvc plots show will need internet to draw" >&2
  exit 0
fi
scripts=""
for pkg in "${PACKAGES[@]}"; do
  name=${pkg%@*}
  tar -xzf "$work/$name-${pkg#*@}.tgz" -C "$work" "package/build/$name.min.js"
  scripts+="<script>$(cat "$work/package/build/$name.min.js")</script>"$'\n'
done
mkdir -p "$(dirname "$TEMPLATE")"
tmp=$(mktemp "$TEMPLATE.XXXX")
cat >"$tmp" <<HTML
<!DOCTYPE html>
<html>
<head>
  {refresh_tag}
  <meta charset="utf-8">
  <title>brochure-rag plots</title>
  ${scripts}
  <style>table { border-spacing: 15px; }</style>
</head>
<body>
  {plot_divs}
</body>
</html>
HTML
chmod 644 "$tmp"
mv "$tmp" "$TEMPLATE"
.venv/bin/dvc config --local plots.html_template plots/offline.html
echo "offline_plots: $TEMPLATE built; dvc plots show now renders without internet" >&2
