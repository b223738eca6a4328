#!/usr/bin/env bash
# Memory and time of loading a large CSV: `affluent ingest` (land the file, parse it, load a Delta
# table) of ROWS rows, whole process, peak RSS from /usr/bin/time; beside it, DuckDB reading the
# same file into one Parquet file (a reference for what a columnar reader needs), when PYTHON has
# duckdb. Then `affluent alerts test` of an anomaly rule over every row (150 entities, robust
# z-score over 28 days). Nothing is asserted.
#   cargo build --release -p affluent-cli
#   bench/csv_load_memory.sh [target/release/affluent] [python-with-duckdb]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/affluent}"
python="${2:-}"
rows="${ROWS:-1000000}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

python3 bench/visits_csv.py "$dir/visits.csv" "$rows"
echo "CSV: $rows rows, $(stat -c %s "$dir/visits.csv") bytes"
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
[query]
max_rows = 5000000
[alerts.odd_day]
sql = "SELECT agency, counter, day, visits FROM visits"
entity = ["agency", "counter"]
time = "day"
message = "{agency} {counter}: {visits:int} visits on {day}"
when = { value = "visits", anomaly = 3.5, window = 28 }
TOML
/usr/bin/time -f "affluent ingest (land + load): %e s, peak RSS %M KiB" \
  "$bin" --project "$dir" ingest visits >/dev/null
"$bin" --project "$dir" query "SELECT count(*) AS rows, sum(visits) AS visits FROM visits"
/usr/bin/time -f "affluent alerts test (anomaly over every row): %e s, peak RSS %M KiB" \
  "$bin" --project "$dir" alerts test odd_day | head -1

if [ -n "$python" ]; then
  /usr/bin/time -f "DuckDB read_csv -> Parquet: %e s, peak RSS %M KiB" "$python" - "$dir" <<'PY'
import sys, duckdb
d = sys.argv[1]
con = duckdb.connect()
con.execute(f"COPY (SELECT CAST(day AS DATE) AS day, agency, counter, visits FROM read_csv('{d}/visits.csv')) TO '{d}/visits.parquet' (FORMAT parquet)")
print(con.execute(f"SELECT count(*), sum(visits) FROM '{d}/visits.parquet'").fetchone())
PY
fi
