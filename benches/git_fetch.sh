#!/usr/bin/env bash
# Cold and warm Git fetch of a repository with 10,000 files, through
# `plumb plan` (one exec target over a one-file directory of the repository
# whose plugin lists nothing, so the run is fetching and checking out the
# whole tree, not parsing it). Cold: empty state_dir. Warm: the
# same state_dir again, nothing new upstream. Warm after a push: one new
# commit touching one file. See BENCHMARKS.md.
#
#   benches/git_fetch.sh [FILES]       (default 10000; builds --release)
set -euo pipefail
files="${1:-10000}"
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
plumb="$PWD/target/release/plumb"
work="$(mktemp -d)"
trap 'sleep 0.2; rm -rf "$work" 2>/dev/null || true' EXIT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@plumb.invalid GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@plumb.invalid

git init -q -b main "$work/src"
python3 - "$work/src" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "items", f"{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"item-{i}.yaml"), "w") as f:
        f.write(f"id: item/{i}\nowner: team-{i % 17}\nsize: {i}\n")
PY
mkdir -p "$work/src/meta" && echo "id: meta/one" > "$work/src/meta/one.yaml"
git -C "$work/src" add -A && git -C "$work/src" commit -qm "10k files"
git clone -q --bare "$work/src" "$work/origin.git"
bytes=$(du -sb "$work/src/items" | cut -f1)

cat > "$work/plumb.yaml" <<YAML
source:
  git: { url: $work/origin.git, ref: main }
state_dir: $work/state
targets:
  - name: items
    provider: exec
    path: meta
    connection: { command: [sh, -c, "echo []"] }
YAML

run() { # label
  local start end
  start=${EPOCHREALTIME/./}
  "$plumb" plan -c "$work/plumb.yaml" --format json --out "$work/plan.json" || test $? -eq 2
  end=${EPOCHREALTIME/./}
  printf '%-28s %8d ms\n' "$1" "$(( (end - start) / 1000 ))"
}
echo "repository: $files files, $((bytes / 1024)) KiB of YAML"
run "cold (empty state_dir)"
run "warm (nothing new)"
run "warm (nothing new, again)"
echo "x: 1" >> "$work/src/items/00/item-0.yaml"
git -C "$work/src" commit -qam "one change" && git -C "$work/src" push -q "$work/origin.git" main
run "warm (one new commit)"
echo "checkouts kept: $(ls "$work/state/checkouts" | wc -l), cache: $(du -sh "$work/state/git" | cut -f1)"
