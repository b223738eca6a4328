#!/usr/bin/env bash
# Memory and answers of the dashboard under a login storm: ROUNDS rounds of CONCURRENCY
# concurrent wrong-password logins, each from its own forwarded address (another /24) and
# account name, so that every one passes the throttle and asks for an argon2id check (19 MiB
# each). The server sits behind a "proxy" (trusted_proxies = 127.0.0.1) to make the addresses.
#   cargo build --release -p affluent-cli && bench/login_storm.sh [target/release/affluent]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/affluent}"
rounds="${ROUNDS:-10}"
concurrency="${CONCURRENCY:-100}"
dir="$(mktemp -d)"
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/affluent.toml" <<'TOML'
name = "storm"
[dashboard]
trusted_proxies = ["127.0.0.1"]
[pages.empty]
[pages.empty.panels.note]
kind = "text"
text = "nothing"
TOML
echo "bench password" | "$bin" --project "$dir" user add bench --role viewer 2>/dev/null
"$bin" --project "$dir" serve --listen 127.0.0.1:0 >"$dir/url" 2>"$dir/serve.log" &
server=$!
for _ in $(seq 1 100); do [ -s "$dir/url" ] && break; sleep 0.2; done
url="$(head -1 "$dir/url")"
sleep 1
python3 - "$url" "$server" "$rounds" "$concurrency" <<'PY'
import concurrent.futures, http.client, json, sys, time, urllib.parse
url, pid, rounds, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
host = urllib.parse.urlparse(url)
def status(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024
def login(i):
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    c.request("GET", "/api/session")
    r = c.getresponse()
    token = json.loads(r.read())["csrf"]
    cookies = "; ".join(v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie")
    body = json.dumps({"name": f"nobody{i}", "password": "wrong password"})
    started = time.perf_counter()
    c.request("POST", "/api/login", body, {
        "Content-Type": "application/json", "Cookie": cookies, "X-CSRF-Token": token,
        "X-Forwarded-For": f"10.{i // 250 % 250}.{i % 250}.7",
    })
    r = c.getresponse(); r.read(); c.close()
    return r.status, time.perf_counter() - started
idle = status("VmRSS")
answers, latencies = {}, []
started = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(conc) as pool:
    for k in range(rounds):
        for code, took in pool.map(login, range(k * conc, (k + 1) * conc)):
            answers[code] = answers.get(code, 0) + 1
            latencies.append(took)
wall = time.perf_counter() - started
latencies.sort()
p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
print(f"{rounds * conc} logins, {conc} at a time, in {wall:.1f} s: answers {dict(sorted(answers.items()))}")
print(f"checked (401) per second: {answers.get(401, 0) / wall:.1f}; latency p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms")
print(f"server RSS idle {idle} MiB, peak (VmHWM) {status('VmHWM')} MiB, after {status('VmRSS')} MiB")
import os, collections
print("threads", len(os.listdir(f"/proc/{pid}/task")), collections.Counter(open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{pid}/task")))
PY
