// The pipeline page in a real browser, on a copy of examples/footfall whose visitor-counter API
// is down: a backfill while it is down leaves failed holes on the coverage timeline; with the
// simulator started, the admin's retry button fills them. Viewers see the page, not the button.
const { test, expect } = require("@playwright/test");
const { spawn, execFileSync } = require("node:child_process");
const path = require("node:path");

test.describe.configure({ mode: "serial" });

const base = () => process.env.AFFLUENT_OPS_URL;
const dir = () => process.env.AFFLUENT_OPS_DIR;
const port = () => process.env.AFFLUENT_OPS_API_PORT;
const shots = path.join(__dirname, "..", "screenshots");
const HOUR = 3600e3;
// Two complete hours, three hours ago (inside the source's eight weeks since its start date).
const from = Math.floor(Date.now() / HOUR) * HOUR - 3 * HOUR;
const to = from + 2 * HOUR;
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
const pageUrl = () => `${base()}/pipeline?from=${iso(from - 2 * HOUR)}&to=${iso(to + HOUR)}`;

async function login(page, name, password) {
  await page.goto(base() + "/login");
  await page.fill("input[name=name]", name);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await expect(page.locator("h1")).not.toHaveText("Log in");
}

const timeline = (page) => page.locator('.timeline[data-task="source:footfall_api"]');
const segmentAt = (page, state) => timeline(page).locator(`.segment[data-state="${state}"][data-start="${iso(from)}"]`);

test("an outage leaves failed holes; the admin's retry fills them", async ({ page }) => {
  // The API is down (nothing listens on its port): a backfill of two hours fails.
  const env = { ...process.env, FOOTFALL_API_URL: `http://127.0.0.1:${port()}` };
  let failed = false;
  try {
    execFileSync(process.env.AFFLUENT_BIN, ["--project", dir(), "backfill", "footfall_api", "--from", iso(from), "--to", iso(to), "--attempts", "1"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    failed = e.status === 1;
  }
  expect(failed, "the backfill fails while the API is down").toBe(true);

  await login(page, "ada", "correct horse battery");
  await page.goto(pageUrl());
  await expect(page.locator("h1")).toHaveText("Pipeline");
  const hole = segmentAt(page, "failed");
  await expect(hole).toHaveCount(1);
  await expect(hole).toHaveAttribute("data-end", iso(to));
  await expect(hole).toHaveClass(/hole/);
  // Missing intervals before and after: never run since the start date.
  await expect(timeline(page).locator('.segment[data-state="missing"]')).toHaveCount(2);
  await expect(page.locator('#tasks tr[data-task="source:footfall_api"] td').nth(5)).toHaveText("2");
  await expect(page.locator("#runs tr.run-failed").first()).toContainText("footfall_api");
  await page.screenshot({ path: path.join(shots, "pipeline-outage.png"), fullPage: true });

  // The simulator comes up on the API's port; the retry runs in the server.
  const sim = spawn(process.env.AFFLUENT_BIN, ["simulate", "footfall", "--port", port()], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    await new Promise((resolve, reject) => {
      sim.stdout.once("data", resolve);
      sim.on("exit", (code) => reject(new Error(`the simulator exited (${code})`)));
    });
    await hole.click();
    await expect(page.locator("#segment h2")).toContainText("2 interval(s) failed");
    await expect(page.locator("#segment .error")).not.toBeEmpty();
    await page.click("#backfill");
    await expect(page.locator('#backfills li[data-status="succeeded"]')).toHaveCount(1, { timeout: 60_000 });
    // The coverage is drawn again: the two hours are done, the hole is gone.
    await expect(segmentAt(page, "done")).toHaveCount(1);
    await expect(segmentAt(page, "done")).toHaveAttribute("data-end", iso(to));
    await expect(timeline(page).locator('.segment[data-state="failed"]')).toHaveCount(0);
    // The server's log tells who started it.
    await expect(page.locator("#log")).toContainText("ada started a backfill of source:footfall_api");
    await page.screenshot({ path: path.join(shots, "pipeline-filled.png"), fullPage: true });
  } finally {
    sim.kill("SIGTERM");
  }
});

test("a viewer sees the coverage and runs, without the backfill button", async ({ page }) => {
  await login(page, "vic", "viewer password");
  await page.goto(pageUrl());
  await expect(segmentAt(page, "done")).toHaveCount(1);
  await segmentAt(page, "done").click();
  await expect(page.locator("#segment")).toBeVisible();
  await timeline(page).locator('.segment[data-state="missing"]').first().click();
  await expect(page.locator("#segment h2")).toContainText("missing");
  await expect(page.locator("#backfill")).toHaveCount(0);
  await expect(page.locator("#runs tbody tr").first()).toBeVisible();
  await expect(page.locator("#logs")).toHaveCount(0);
  // Zooming in on a segment narrows the range to it.
  await page.locator("#segment button", { hasText: "Zoom in" }).click();
  await expect(page).toHaveURL(/\/pipeline\?from=/);
  await expect(timeline(page).locator(".segment")).toHaveCount(1);
});
