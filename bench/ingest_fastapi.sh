#!/usr/bin/env bash
# Ingest throughput against a FastAPI server (issue 14: affluent reaches >= 90 % of the server's
# own ceiling). One server, bench/footfall_fastapi.py (seed 004's API as the seed serves it:
# FastAPI + uvicorn, one worker, access log off), measured three ways over the same period:
#   1. its ceiling: wrk, WRK_CONNECTIONS (8) connections, WRK_THREADS (2) threads, WRK_DURATION
#      (15s) after a WRK_WARMUP (3s) warm-up, rotating through the period's real request paths
#      (every hour x agency x counter, the query as affluent sends it; bench/footfall_paths.lua);
#   2. affluent: `ingest footfall_api --from START --to END --no-load` on a fresh copy of
#      examples/footfall (8 requests in flight, every response landed), the whole process timed,
#      the requests counted as landed entries;
#   3. the seed's sequential extractor (shared/bench/footfall_extract_sequential.py), whole process.
# DAYS (7 by default: 21 counters x 24 hours x 7 = 3,528 requests) from START (2024-03-04, a
# Monday; no daylight-saving change in the first 27 days).
# Needs wrk and python3 with venv (Debian packages wrk, python3-venv); fastapi, uvicorn and
# requests are installed from PyPI into BENCH_VENV ($HOME/.cache/affluent/bench-venv), once.
#   bench/ingest_fastapi.sh target/release/affluent [DAYS]
set -euo pipefail
usage="usage: bench/ingest_fastapi.sh AFFLUENT_BIN [DAYS]"
die() { echo "ingest_fastapi: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "$usage"
bin="$(realpath "$1")" || die "$1: no such file"
[ -x "$bin" ] || die "$1 is not an executable affluent binary ($usage)"
days="${2:-7}"
[[ "$days" =~ ^[1-9][0-9]*$ ]] || die "DAYS must be a positive number of days, not '$days'"
cd "$(dirname "$0")/.."
root="$PWD"
shared="${SHARED:-$root/../shared}"
sequential="$shared/bench/footfall_extract_sequential.py"
[ -f "$sequential" ] || die "$sequential not found (set SHARED to the shared folder)"
start="${START:-2024-03-04}"
end="$(date -d "$start + $days days" +%F)" || die "START must be a date YYYY-MM-DD, not '$start'"
venv="${BENCH_VENV:-$HOME/.cache/affluent/bench-venv}"
conns="${WRK_CONNECTIONS:-8}" threads="${WRK_THREADS:-2}"
duration="${WRK_DURATION:-15s}" warmup="${WRK_WARMUP:-3s}"

command -v wrk >/dev/null || die "wrk not found: install the Debian package wrk (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found: install the Debian package curl"
py="$venv/bin/python"
if ! "$py" -c 'import fastapi, uvicorn, requests' 2>/dev/null; then
  python3 -c 'import ensurepip, venv' 2>/dev/null \
    || die "python3 cannot create a venv: install the Debian package python3-venv"
  echo "creating $venv (fastapi, uvicorn, requests)..."
  python3 -m venv "$venv" || die "python3 -m venv $venv failed: install the Debian package python3-venv"
  "$py" -m pip install --quiet --disable-pip-version-check fastapi uvicorn requests \
    || die "pip could not install fastapi, uvicorn, requests into $venv"
fi

dir="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server, on a free port.
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
"$py" bench/footfall_fastapi.py "$port" >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$url/" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$dir/server.log" >&2; die "the FastAPI server exited"; }
  sleep 0.2
done
curl -fsS -o /dev/null "$url/" || { cat "$dir/server.log" >&2; die "the FastAPI server does not answer on $url"; }
echo "FastAPI server on $url ($("$py" -c 'import fastapi, uvicorn; print(f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}")'), one worker)"

# Every request of the period, as affluent sends it (its parameters in name order), for wrk.
"$py" - "$start" "$days" crates/affluent-simulate/src/agencies.csv >"$dir/paths" <<'PY'
import csv, sys
from datetime import datetime, timedelta
start, days, agencies = datetime.fromisoformat(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = [(r["agency_name"], int(r["counter_number"])) for r in csv.DictReader(open(agencies))]
for h in range(days * 24):
    stamp = (start + timedelta(hours=h)).strftime("%Y-%m-%d%%20%H:%M")
    for name, counters in rows:
        for c in range(counters):
            print(f"/get_visitor_count?agency_name={name}&count_unit=visitors&counter_id={c}&date_time={stamp}")
PY
planned="$(wc -l <"$dir/paths")"
echo "period $start to $end ($days day(s)): $planned requests; e.g. GET $(sed -n 211p "$dir/paths")"
echo "  -> $(curl -fsS "$url$(sed -n 211p "$dir/paths")")"

# 1. The server's ceiling.
wrk_run() { wrk -t"$threads" -c"$conns" -d"$1" --latency -s bench/footfall_paths.lua "$url/" -- "$dir/paths"; }
wrk_run "$warmup" >/dev/null
echo "== wrk: $conns connections, $threads threads, $duration"
wrk_run "$duration" | tee "$dir/wrk.out" | grep -E "Latency  |50%|99%|requests in|Socket errors|Non-2xx|Requests/sec"
if grep -q "Non-2xx" "$dir/wrk.out"; then die "the server answered errors to wrk (above): no ceiling"; fi
if grep -q "Socket errors" "$dir/wrk.out"; then echo "warning: wrk saw socket errors (above)" >&2; fi
ceiling="$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.out")"
[ -n "$ceiling" ] || die "no Requests/sec in wrk's output"

# 2. affluent, from a fresh copy of the example (no data directory, no raw exports).
proj="$dir/footfall"
mkdir -p "$proj"
rsync -a --exclude=/.affluent --exclude=/raw --exclude=/expected examples/footfall/ "$proj/"
mkdir "$proj/raw"
echo "== affluent ingest footfall_api --from $start --to $end --no-load (concurrency $(awk -F' *= *' '/^concurrency/ {print $2; exit}' "$proj/affluent.toml"))"
t0="$EPOCHREALTIME"
FOOTFALL_API_URL="$url" "$bin" --project "$proj" ingest footfall_api --from "$start" --to "$end" --no-load \
  >"$dir/ingest.out" 2>"$dir/ingest.log" || { cat "$dir/ingest.log" >&2; die "affluent ingest failed"; }
t1="$EPOCHREALTIME"
affluent_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')"
affluent_n="$("$bin" --project "$proj" landing list footfall_api --format json | wc -l)"
echo "$affluent_n entries landed in $affluent_s s"

# 3. The seed's sequential extractor.
echo "== footfall_extract_sequential.py $start $days"
t0="$EPOCHREALTIME"
"$py" "$sequential" "$url" "$shared/fixtures/footfall/agencies.csv" "$start" "$days" "$dir/sequential.csv" \
  >"$dir/sequential.log" 2>&1 || { cat "$dir/sequential.log" >&2; die "the sequential extractor failed"; }
t1="$EPOCHREALTIME"
sequential_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')"
sequential_n="$(( $(wc -l <"$dir/sequential.csv") - 1 ))"
echo "$sequential_n rows in $sequential_s s ($(cat "$dir/sequential.log"))"

[ "$affluent_n" -gt 0 ] && [ "$sequential_n" -gt 0 ] || die "no requests counted"
echo
awk -v ceiling="$ceiling" -v an="$affluent_n" -v as="$affluent_s" -v sn="$sequential_n" -v ss="$sequential_s" \
    -v wrk="wrk -c$conns -t$threads -d$duration" 'BEGIN {
  ar = an / as; sr = sn / ss
  printf "| %-40s | %8s | %9s | %9s | %-26s |\n", "client", "requests", "seconds", "req/s", "ratio"
  printf "|%s|%s|%s|%s|%s|\n", "------------------------------------------", "----------", "-----------", "-----------", "----------------------------"
  printf "| %-40s | %8s | %9s | %9.1f | %-26s |\n", "server ceiling (" wrk ")", "", "", ceiling, "100 %"
  printf "| %-40s | %8d | %9.2f | %9.1f | %-26s |\n", "affluent ingest --no-load", an, as, ar, sprintf("%.1f %% of ceiling", 100 * ar / ceiling)
  printf "| %-40s | %8d | %9.2f | %9.1f | %-26s |\n", "sequential extractor (seed)", sn, ss, sr, sprintf("affluent / it: %.2fx", ar / sr)
}'
