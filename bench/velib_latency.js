#!/usr/bin/env node
// Poll-to-chart latency of examples/velib (BENCHMARKS.md, "Event-time windows"): how long after
// a poll's response arrives the open dashboard shows every panel brought up to date from it.
//
//   cargo build --release -p affluent-cli
//   (cd web && npm ci) && node bench/velib_latency.js [POLLS] [PERIOD_S]
//
// A copy of examples/velib gets an hour of simulated history (`affluent demo --no-run`), then
// `affluent run` polls the Vélib simulator every PERIOD_S seconds (default 10; the simulator's
// clock runs 60/PERIOD_S times faster, a simulated minute per poll) and serves the dashboard;
// Chromium (Playwright) keeps /pages/live open. Each poll is landed, loaded, windowed, the ML
// model predicts, the models run, and the server's change events make the page reload the
// panels reading what changed. For each poll: its response time (`polled_at`, written by the
// load) to the moment the page's last panel finished redrawing before the next poll.
// Prints p50, p90, p99 and max over POLLS polls (default 30). A redraw counts for the last poll
// before it, so the period must be longer than the pipeline takes (the script warns otherwise).
const { execFileSync, spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const repo = path.resolve(__dirname, "..");
const { chromium } = require(path.join(repo, "web/node_modules/@playwright/test"));
const polls = Number(process.argv[2] || 30);
const period = Number(process.argv[3] || 10);
const target = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
const bin = process.env.AFFLUENT_BIN || path.join(target, "release", "affluent");

function firstLine(child) {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(out.split("\n")[0].trim());
    });
    child.on("exit", (code) => reject(new Error(`exited (${code})`)));
  });
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

(async () => {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "affluent-latency-")), "velib");
  fs.cpSync(path.join(repo, "examples/velib"), dir, { recursive: true, filter: (s) => !s.includes(`${path.sep}.affluent`) });
  const toml = path.join(dir, "affluent.toml");
  fs.writeFileSync(toml, fs.readFileSync(toml, "utf8").replace('every = "1m"', `every = "${period}s"`));
  const run = (args, input) => execFileSync(bin, ["--project", dir, ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  const start = "2025-03-03T09:00:00Z";
  run(["demo", "--no-run", "--hours", "1", "--until", start]);
  run(["user", "add", "ada", "--role", "admin"], "correct horse battery\n");

  const sim = spawn(bin, ["simulate", "velib", "--port", "0", "--at", start, "--speed", String(60 / period)], { stdio: ["ignore", "pipe", "pipe"] });
  const simUrl = await firstLine(sim);
  const port = 18000 + Math.floor(Math.random() * 1000);
  const server = spawn(bin, ["--project", dir, "run", "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, VELIB_API_URL: simUrl, RUST_LOG: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(base + "/login")).ok) break;
    } catch (_) {
      if (i > 100) throw new Error("the dashboard did not start");
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
  const page = await browser.newPage();
  await page.goto(base + "/login");
  await page.fill("input[name=name]", "ada");
  await page.fill("input[name=password]", "correct horse battery");
  await page.click("button[type=submit]");
  await page.waitForURL((u) => !u.pathname.startsWith("/login"));
  await page.goto(base + "/pages/live");
  await page.waitForLoadState("networkidle");
  // Each time a panel stops loading: the wall clock, in the page.
  await page.evaluate(() => {
    window.redrawn = [];
    new MutationObserver((changes) => {
      for (const c of changes) {
        if (c.attributeName === "class" && c.oldValue && c.oldValue.includes("loading") && !c.target.classList.contains("loading")) {
          window.redrawn.push(Date.now());
        }
      }
    }).observe(document.body, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ["class"] });
  });
  const began = Date.now();
  await new Promise((r) => setTimeout(r, (polls + 1) * period * 1000));
  const redrawn = await page.evaluate(() => window.redrawn);
  await browser.close();
  server.kill("SIGTERM");
  sim.kill("SIGTERM");

  const polled = run(["query", "--format", "csv", `SELECT DISTINCT to_unixtime(polled_at) * 1000 AS t FROM station_status WHERE polled_at >= to_timestamp_millis(${began}) ORDER BY t`])
    .trim()
    .split("\n")
    .slice(1)
    .map(Number);
  const latencies = [];
  for (let i = 0; i + 1 < polled.length && latencies.length < polls; i++) {
    const inside = redrawn.filter((t) => t >= polled[i] && t < polled[i + 1]);
    if (inside.length) latencies.push(Math.max(...inside) - polled[i]);
  }
  latencies.sort((a, b) => a - b);
  if (!latencies.length) throw new Error(`no redraw measured (${polled.length} polls, ${redrawn.length} redraws)`);
  const ms = (x) => `${(x / 1000).toFixed(2)} s`;
  console.log(
    `${latencies.length} polls every ${period} s (${polled.length} landed, ${redrawn.length} panel redraws): poll-to-chart p50 ${ms(quantile(latencies, 0.5))}, p90 ${ms(quantile(latencies, 0.9))}, p99 ${ms(quantile(latencies, 0.99))}, max ${ms(latencies[latencies.length - 1])}`,
  );
  if (latencies[latencies.length - 1] > 0.8 * period * 1000) {
    console.log(`warning: a poll took most of the ${period} s period: the pipeline may not keep up; measure again with a longer PERIOD_S`);
  }
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
