#!/usr/bin/env bash
# Dashboard latency under load: a chart API call (one day-by-day series with bound filters) over
# a Delta table of 1,000,000 rows, hammered by wrk on loopback; plus the binary's size and the
# server's idle memory. Needs wrk (Debian package) and a release build:
#   cargo build --release -p affluent-cli && bench/dashboard_latency.sh [target/release/affluent]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/affluent}"
rows="${ROWS:-1000000}"
duration="${DURATION:-20s}"
dir="$(mktemp -d)"
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT

python3 bench/visits_csv.py "$dir/visits.csv" "$rows"
cat > "$dir/affluent.toml" <<'TOML'
name = "bench"
[sources.visits]
type = "csv"
path = "visits.csv"
columns = { day = "string", agency = "string", counter = "int", visits = "int" }
[tables.visits]
source = "visits"
[tables.visits.columns]
day = { path = "day", type = "date" }
agency = { path = "agency", type = "string" }
counter = { path = "counter", type = "int" }
visits = { path = "visits", type = "int" }
[pages.visits]
[pages.visits.filters.agency]
kind = "select"
sql = "SELECT DISTINCT agency FROM visits ORDER BY 1"
[pages.visits.filters.period]
kind = "period"
default = "last_12_months"
anchor_sql = "SELECT max(day) FROM visits"
[pages.visits.panels.daily]
kind = "line"
sql = "SELECT day, sum(visits) AS visits FROM visits WHERE agency = $agency AND day >= $period_start AND day < $period_end GROUP BY day ORDER BY day"
TOML
echo "loading $rows rows..."
/usr/bin/time -f "ingest+load: %e s, max RSS %M KiB" "$bin" --project "$dir" ingest visits >/dev/null
echo "bench password" | "$bin" --project "$dir" user add bench --role viewer 2>/dev/null
"$bin" --project "$dir" serve --listen 127.0.0.1:0 >"$dir/url" 2>"$dir/serve.log" &
server=$!
for _ in $(seq 1 50); do [ -s "$dir/url" ] && break; sleep 0.2; done
url="$(head -1 "$dir/url")"
sleep 2
idle_kib="$(awk '/VmRSS/ {print $2}' /proc/$server/status)"

jar="$dir/cookies"
csrf="$(curl -s -c "$jar" -b "$jar" "$url/api/session" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf"])')"
curl -s -c "$jar" -b "$jar" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
  -d '{"name":"bench","password":"bench password"}' "$url/api/login" >/dev/null
# HttpOnly cookies are written as "#HttpOnly_host ..." lines.
cookie="$(awk '(!/^#/ || /^#HttpOnly_/) && NF >= 7 {printf "%s%s=%s", sep, $6, $7; sep="; "}' "$jar")"
api="$url/api/pages/visits/panels/daily?agency=agency_7&period=2021-01-01..2021-12-31"
answer="$(curl -s -H "Cookie: $cookie" "$api")"
points="$(echo "$answer" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')" || { echo "chart call failed: $answer" >&2; exit 1; }
echo "chart call: $points points per answer"

for c in 1 8; do
  wrk -t1 -c$c -d5s -H "Cookie: $cookie" "$api" >/dev/null   # warm-up
  echo "== wrk, $c connection(s), $duration"
  wrk -t$(( c > 1 ? 2 : 1 )) -c$c -d"$duration" --latency -H "Cookie: $cookie" "$api" \
    | grep -E "Latency Distribution|50%|75%|90%|99%|Requests/sec|requests in|Non-2xx"
done
strip -o "$dir/stripped" "$bin"
echo "binary: $(stat -c %s "$bin") bytes as built (with line tables), $(stat -c %s "$dir/stripped") bytes stripped"
echo "idle RSS after start: $idle_kib KiB; after the load: $(awk '/VmRSS/ {print $2}' /proc/$server/status) KiB (high-water $(awk '/VmHWM/ {print $2}' /proc/$server/status) KiB)"
