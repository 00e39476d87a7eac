#!/usr/bin/env bash
# Soak: `plumb serve` with 20 exec targets audited every second. Samples the
# daemon's RSS after 100 cycles and at the end, its CPU time per audit, and
# the time from a live change to `plumb_plan_exit_code` turning 2 (p50/p99
# over the changes made during the run). See BENCHMARKS.md.
#
#   benches/soak.sh [SECONDS] [PLUMB_BINARY]   (default 1800 s, target/release/plumb)
#   SOAK_WRAP="heaptrack -o /tmp/soak" benches/soak.sh 600 BINARY
#
# SOAK_TRACE=FILE also writes "seconds audits rss_kib" every 60 s, to tell
# growth that levels off (allocator warm-up) from growth that keeps going.
set -euo pipefail
seconds="${1:-1800}"
plumb="${2:-$(cd "$(dirname "$0")/.." && pwd)/target/release/plumb}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/desired"
{
  echo "source: { dir: ./desired }"
  echo "state_dir: ./state"
  echo "server: { listen: \"127.0.0.1:$port\" }"
  echo "targets:"
  for i in $(seq -w 1 20); do
    mkdir -p "$work/desired/t$i"
    python3 - "$work" "$i" <<'PY'
import json, sys
work, i = sys.argv[1], sys.argv[2]
docs = [{"id": f"item/{i}-{n}", "owner": f"team-{n % 7}", "size": n, "tags": ["a", "b"], "spec": {"replicas": 3, "image": f"img:{n}"}} for n in range(50)]
with open(f"{work}/desired/t{i}/items.json", "w") as f: json.dump(docs, f)
with open(f"{work}/live-t{i}.json", "w") as f: json.dump(docs, f)
PY
    echo "  - { name: t$i, provider: exec, path: t$i, schedule: \"* * * * * *\", connection: { command: [cat, live-t$i.json] } }"
  done
} > "$work/plumb.yaml"
# SOAK_WRAP runs the daemon under a profiler, e.g. SOAK_WRAP="heaptrack -o
# /tmp/soak" with a `--no-default-features` build (the system allocator,
# which heap profilers see); RSS and CPU are then read from the daemon itself.
${SOAK_WRAP:-} "$plumb" serve -c "$work/plumb.yaml" >/dev/null 2>&1 &
pid=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }   # clock ticks
audits() { curl -s "127.0.0.1:$port/metrics" | awk '/^plumb_run_duration_seconds_count/ {s += $2} END {print s + 0}'; }
until curl -sf "127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
[ -n "${SOAK_WRAP:-}" ] && pid=$(pgrep -f "^$plumb serve -c $work/plumb.yaml")
echo "daemon pid $pid, 20 targets x 50 documents, every second, for ${seconds}s"
latencies="$work/latencies"
: > "$latencies"
start=$(date +%s)
rss100=""
change=0
while [ $(( $(date +%s) - start )) -lt "$seconds" ]; do
  a=$(audits)
  elapsed=$(( $(date +%s) - start ))
  if [ -n "${SOAK_TRACE:-}" ] && [ "$elapsed" -ge "${next_trace:-0}" ]; then
    echo "$elapsed $a $(rss)" >> "$SOAK_TRACE"; next_trace=$(( elapsed + 60 ))
  fi
  if [ -z "$rss100" ] && [ "$a" -ge 2000 ]; then rss100=$(rss); cpu100=$(cpu); audits100=$a; fi
  # Every 20 s: change one target's live state, time how long until it drifts.
  if [ $(( ($(date +%s) - start) % 20 )) -eq 0 ]; then
    change=$((change + 1)); t=$(printf "%02d" $(( change % 20 + 1 )))
    python3 - "$work/live-t$t.json" "$change" <<'PY'
import json, sys
p, c = sys.argv[1], int(sys.argv[2])
d = json.load(open(p)); d[0]["owner"] = f"changed-{c}"; json.dump(d, open(p, "w"))
PY
    t0=$(date +%s%N)
    until curl -s "127.0.0.1:$port/metrics" | grep -q "plumb_plan_exit_code{provider=\"exec\",target=\"t$t\"} 2"; do sleep 0.05; done
    echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$latencies"
    # Put it back so the next change is a change again.
    python3 - "$work/desired/t$t/items.json" "$work/live-t$t.json" <<'PY'
import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])
PY
  fi
  sleep 1
done
a_end=$(audits); rss_end=$(rss); cpu_end=$(cpu); hz=$(getconf CLK_TCK)
echo "audits: $a_end (about $(( a_end / 20 )) cycles of 20 targets)"
echo "RSS after ~100 cycles: ${rss100:-n/a} KiB; at the end: $rss_end KiB"
[ -n "$rss100" ] && python3 -c "print(f'RSS growth from cycle 100 to the end: {($rss_end - $rss100) / $rss100 * 100:.1f}%')"
[ -n "$rss100" ] && python3 -c "print(f'CPU per audit (after cycle 100): {($cpu_end - $cpu100) / $hz / max(1, $a_end - $audits100) * 1000:.2f} ms')"
python3 - "$latencies" <<'PY'
import sys
xs = sorted(int(l) for l in open(sys.argv[1]) if l.strip())
if xs:
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    print(f"live change -> exit code 2: n={len(xs)} p50={q(0.5)} ms p99={q(0.99)} ms max={xs[-1]} ms")
PY
