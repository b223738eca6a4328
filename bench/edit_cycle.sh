#!/usr/bin/env bash
# The edit-build-test cycle after touching one file of affluent-sources: how long until
# `cargo test -p affluent-sources` and then `cargo test -p affluent-cli` can run again (build
# only, --no-run; the tests' own run time is not the layout's). Usage:
#   bench/edit_cycle.sh [REV]   # REV: measure that commit in a worktree (default: this tree)
# Each measurement is taken after a warm-up build, three times; the median is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/affluent/target}"
tree=.
if [ $# -gt 0 ]; then
  tree=$(mktemp -d)/tree
  git worktree add -q --detach "$tree" "$1"
  trap 'git worktree remove --force "$tree"' EXIT
fi
cd "$tree"
file=crates/affluent-sources/src/lib.rs
median() { sort -n | sed -n 2p; }
measure() {
  local pkg=$1
  for _ in 1 2 3; do
    touch "$file"
    cargo test -q -p affluent-sources --no-run --locked >/dev/null 2>&1
    [ "$pkg" = affluent-sources ] && { touch "$file"; }
    local start end
    start=$(date +%s.%N)
    cargo test -q -p "$pkg" --no-run --locked >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc
  done | median
}
cargo test -q -p affluent-cli --no-run --locked >/dev/null 2>&1
cargo test -q -p affluent-sources --no-run --locked >/dev/null 2>&1
echo "rev $(git rev-parse --short HEAD)"
echo "touch $file; cargo test -p affluent-sources --no-run: $(measure affluent-sources) s"
echo "then cargo test -p affluent-cli --no-run: $(measure affluent-cli) s"
