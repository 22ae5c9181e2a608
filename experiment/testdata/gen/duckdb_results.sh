#!/usr/bin/env bash
# Regenerates experiment/testdata/duckdb/*.json from the committed results
# Parquet files (see duckdb_results.mjs). Run from the repository root.
set -euo pipefail
: "${DUCKDB_NODE_MODULES:?set DUCKDB_NODE_MODULES to a node_modules folder holding @duckdb/node-api@1.5.6-r.1}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp experiment/testdata/gen/duckdb_results.mjs "$tmp/"
ln -s "$(realpath "$DUCKDB_NODE_MODULES")" "$tmp/node_modules"
out=experiment/testdata/duckdb
rm -f "$out"/*.json
mkdir -p "$out"
files=$(ls results/*/local/*.parquet)
node "$tmp/duckdb_results.mjs" "$(realpath "$out")" $(realpath $files)
ls "$out"
