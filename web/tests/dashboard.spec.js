// The footfall page in a real browser: login, filters, chart points, CSV export, favourites,
// the login redirect, themes, and login throttling. Expected figures come from `affluent query`
// on the same tables, not from the dashboard.
const { test, expect } = require("@playwright/test");
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { queryIn, settled } = require("./helpers");

test.describe.configure({ mode: "serial" });

const url = (p) => process.env.AFFLUENT_URL + p;
const shots = path.join(__dirname, "..", "screenshots");

const query = (sql) => queryIn(process.env.AFFLUENT_PROJECT_DIR, sql);

async function login(page, name, password) {
  await page.fill("input[name=name]", name);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
}


async function chartPoints(page, panel) {
  return page.evaluate((id) => {
    const el = document.querySelector(`#panel-${id} .chart`);
    const chart = el && echarts.getInstanceByDom(el);
    return chart ? chart.getOption().series.map((s) => s.data.length) : null;
  }, panel);
}

test("an anonymous visitor is sent to the login page, and back after it", async ({ page }) => {
  await page.goto(url("/pages/footfall?agency=lyon_2"));
  await expect(page).toHaveURL(/\/login\?next=\/pages\/footfall%3Fagency%3Dlyon_2$/);
  await expect(page.locator("h1")).toHaveText("Log in");
  await page.screenshot({ path: path.join(shots, "login.png") });
  await login(page, "ada", "correct horse battery");
  await expect(page).toHaveURL(/\/pages\/footfall\?agency=lyon_2$/);
  await expect(page.locator("#filter-agency")).toHaveValue("lyon_2");
});

test("after login, next= only leads to this dashboard", async ({ page }) => {
  const origin = new URL(process.env.AFFLUENT_URL).origin;
  await page.goto(url("/login"));
  await login(page, "ada", "correct horse battery");
  await expect(page).toHaveURL(/\/pages\/footfall$/);
  // Logged in: each hostile `next` lands on this origin (as the login form does).
  for (const next of ["https://evil.example/", "//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/%0A/evil.example", "javascript:alert(1)"]) {
    await page.goto(url("/login?next=" + encodeURIComponent(next)));
    await page.waitForLoadState("networkidle");
    expect(new URL(page.url()).origin, next).toBe(origin);
  }
  await page.goto(url("/login?next=" + encodeURIComponent("/favourites")));
  await expect(page).toHaveURL(origin + "/favourites");
});

test("the API documentation renders offline from the binary", async ({ page }) => {
  const external = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(process.env.AFFLUENT_URL)) external.push(r.url());
  });
  await page.goto(url("/api/docs"));
  await expect(page.locator(".swagger-ui .info .title")).toContainText("affluent dashboard API");
  await expect(page.locator(".opblock-summary-path", { hasText: "/api/pages/{page}/panels/{panel}" }).first()).toBeVisible();
  expect(external).toEqual([]);
});

test("filters drive the chart, the URL and the CSV export", async ({ page }) => {
  await page.goto(url("/login"));
  await login(page, "ada", "correct horse battery");
  await expect(page).toHaveURL(/\/pages\/footfall/);
  await settled(page);

  await page.selectOption("#filter-agency", "lyon_1");
  await expect(page).toHaveURL(/agency=lyon_1/);
  await settled(page);
  await page.selectOption("#filter-counter", "1");
  await expect(page).toHaveURL(/counter=1/);
  await settled(page);
  await page.selectOption("#filter-period", "last_4_weeks");
  await expect(page).toHaveURL(/period=last_4_weeks/);
  await settled(page);

  // The period ends on the last day with data (2024-06-30): 4 weeks from 2024-06-03.
  await expect(page.locator("#filter-period-from")).toHaveValue("2024-06-03");
  await expect(page.locator("#filter-period-to")).toHaveValue("2024-06-30");
  const where = "agency_name = 'lyon_1' AND counter_id = 1 AND date BETWEEN DATE '2024-06-03' AND DATE '2024-06-30'";
  const [days] = query(`SELECT count(DISTINCT date) FROM footfall_daily WHERE ${where}`);
  expect(Number(days)).toBeGreaterThan(10);
  await expect.poll(() => chartPoints(page, "daily")).toEqual([Number(days), Number(days)]);
  const [visits] = query(`SELECT sum(daily_visitor_count) FROM footfall_daily WHERE ${where}`);
  await expect(page.locator("#panel-visits .kpi-value")).toHaveText(new Intl.NumberFormat("fr-FR").format(Number(visits)));
  // Dates in the project's locale (fr-FR): DD/MM/YYYY.
  await expect(page.locator("#panel-days tbody tr").first().locator("td").first()).toHaveText(/^\d{2}\/\d{2}\/2024$/);

  const download = page.waitForEvent("download");
  await page.click("#panel-days a.csv");
  const file = await (await download).path();
  const lines = fs.readFileSync(file, "utf8").trim().split("\n");
  expect(lines[0]).toBe("date,counter_id,visits,avg_visits_4_weekday,pct_change,holiday");
  const [rows] = query(`SELECT count(*) FROM footfall_daily WHERE ${where}`);
  expect(lines.length - 1).toBe(Number(rows));

  // The URL is the view: opened elsewhere, it shows the same.
  const shared = page.url();
  const other = await page.context().newPage();
  await other.goto(shared);
  await expect(other.locator("#filter-counter")).toHaveValue("1");
  await expect.poll(() => chartPoints(other, "daily")).toEqual([Number(days), Number(days)]);
  await other.close();

  await page.screenshot({ path: path.join(shots, "footfall.png"), fullPage: true });
  await page.click("#theme");
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  // The charts keep their data in the other theme.
  await expect.poll(() => chartPoints(page, "daily")).toEqual([Number(days), Number(days)]);
  await page.screenshot({ path: path.join(shots, "footfall-dark.png"), fullPage: true });
  await page.click("#theme");
});

test("a starred counter is on My favourites after logging in again", async ({ page }) => {
  await page.goto(url("/login?next=/pages/footfall%3Fagency%3Dgrenoble_1%26counter%3D2"));
  await login(page, "vic", "viewer password");
  await expect(page).toHaveURL(/agency=grenoble_1&counter=2/);
  await settled(page);
  await expect(page.locator("#star")).toHaveText("☆ Star");
  await page.click("#star");
  await expect(page.locator("#star")).toHaveText("★ Starred");

  await page.click("#logout");
  await expect(page).toHaveURL(/\/login$/);
  await page.goto(url("/favourites"));
  await expect(page).toHaveURL(/\/login\?next=\/favourites$/);
  await login(page, "vic", "viewer password");
  await expect(page).toHaveURL(/\/favourites$/);
  const item = page.locator("#favourites li");
  await expect(item).toHaveCount(1);
  await expect(item).toContainText("Footfall: Agency grenoble_1 · Counter 2");
  await page.screenshot({ path: path.join(shots, "favourites.png") });
  await item.locator("a").click();
  await expect(page).toHaveURL(/agency=grenoble_1/);
  await expect(page.locator("#filter-agency")).toHaveValue("grenoble_1");
  await expect(page.locator("#filter-counter")).toHaveValue("2");
  await expect(page.locator("#star")).toHaveText("★ Starred");
  // A viewer has no user management.
  await expect(page.locator("#nav a", { hasText: "Users" })).toHaveCount(0);
  await page.goto(url("/admin"));
  await expect(page.locator("main .error")).toHaveText("only admins manage users");
});

test("new data reaches an open page by itself (server-sent events)", async ({ page }) => {
  await page.goto(url("/login?next=/pages/footfall%3Fagency%3Dlyon_1%26counter%3D0%26period%3D2024-06-01..2024-07-31"));
  await login(page, "ada", "correct horse battery");
  await settled(page);
  await expect(page.locator("#updated")).toHaveText(/^Last updated /);
  const before = await page.locator("#updated").textContent();
  const points = (await chartPoints(page, "daily"))[0];

  // A new export arrives (a Monday after the six months) and is loaded, outside the browser.
  const dir = process.env.AFFLUENT_PROJECT_DIR;
  fs.writeFileSync(
    path.join(dir, "raw", "events_all_agencies_counters_2024-07-01-2024-07-01.csv"),
    "date_time,agency_name,counter_id,visitor_count,unit\n2024-07-01_09,Lyon_1,0,120,visitors\n2024-07-01_10,Lyon_1,0,80,visitors\n",
  );
  const cli = (args) => execFileSync(process.env.AFFLUENT_BIN, ["--project", dir, ...args], { stdio: "pipe" });
  cli(["ingest", "footfall_raw"]);
  cli(["transform"]);

  // No reload: the page hears of the new commits, refreshes its filters and panels.
  await expect(page.locator("#updated")).not.toHaveText(before, { timeout: 20_000 });
  await expect.poll(() => chartPoints(page, "daily")).toEqual([points + 1, points + 1]);
  await expect(page.locator("#panel-days tbody tr").first().locator("td").nth(2)).toHaveText("200");
});

test("six wrong passwords are throttled", async ({ page }) => {
  await page.goto(url("/login"));
  for (let i = 1; i <= 5; i++) {
    await login(page, "mallory", "not the password");
    await expect(page.locator("#login-error")).toHaveText("wrong user name or password");
    await page.locator("#login-error").evaluate((e) => (e.textContent = ""));
  }
  await login(page, "mallory", "not the password");
  await expect(page.locator("#login-error")).toHaveText(/too many failed logins: try again in \d+ s/);
  // Even the right password waits now.
  await login(page, "mallory", "mallory password");
  await expect(page.locator("#login-error")).toHaveText(/too many failed logins/);
  await expect(page).toHaveURL(/\/login$/);
});

test("an alert marked seen by one user stays unseen for another", async ({ browser }) => {
  // `affluent transform` in the setup evaluated the project's alert over the seed's data.
  const total = Number(query("SELECT count(*) FROM alert_firings")[0]);
  expect(total).toBeGreaterThan(1);
  const listed = Math.min(total, 100);

  const vic = await (await browser.newContext()).newPage();
  await vic.goto(url("/login?next=/pages/alerts"));
  await login(vic, "vic", "viewer password");
  await settled(vic);
  const badge = vic.locator("#nav .badge[data-badge=alerts]");
  await expect(badge).toHaveText(String(total));
  const items = vic.locator("#panel-firings li.firing");
  await expect(items).toHaveCount(listed);
  await expect(vic.locator("#panel-firings li.firing.unseen")).toHaveCount(listed);
  await expect(vic.locator("#panel-firings .unseen-count")).toHaveText(`${total} unseen of ${total}`);
  const first = items.first();
  const message = await first.locator(".message").textContent();
  expect(message).toMatch(/visites le \d{4}-\d{2}-\d{2}/);
  await first.locator("button.mark-seen").click();
  await expect(badge).toHaveText(String(total - 1));
  await expect(vic.locator("#panel-firings .unseen-count")).toHaveText(`${total - 1} unseen of ${total}`);
  // The seen firing goes after the unseen ones (past the panel's 100 when more are unseen:
  // the first evaluation walked six months of days), and stays seen after a reload.
  const seenShown = total - 1 < listed ? 1 : 0;
  await expect(vic.locator("#panel-firings li.firing.seen")).toHaveCount(seenShown);
  await expect(items.first()).toHaveClass(/unseen/);
  await expect(items.first().locator(".message")).not.toHaveText(message);
  await vic.reload();
  await settled(vic);
  await expect(vic.locator("#panel-firings li.firing.seen")).toHaveCount(seenShown);
  await expect(items.first().locator(".message")).not.toHaveText(message);
  await expect(badge).toHaveText(String(total - 1));
  await vic.screenshot({ path: path.join(shots, "alerts.png"), fullPage: true });

  // The chart's baseline is the mean of the 4 previous same weekdays, as SQL computes it.
  const baseline = await vic.evaluate(() => {
    const chart = echarts.getInstanceByDom(document.querySelector("#panel-all_agencies .chart"));
    const o = chart.getOption();
    return { names: o.series.map((s) => s.name), last: o.series[1].data[o.series[1].data.length - 1] };
  });
  expect(baseline.names).toEqual(["visits", "visits (baseline)"]);
  const [expected] = query(`WITH d AS (SELECT date, sum(visits) AS v FROM footfall_days GROUP BY date),
    last AS (SELECT max(date) AS date FROM d)
    SELECT avg(d.v) FROM d, last WHERE d.date IN (last.date - INTERVAL '7 days', last.date - INTERVAL '14 days', last.date - INTERVAL '21 days', last.date - INTERVAL '28 days')`);
  expect(baseline.last).toBeCloseTo(Number(expected), 6);

  // Another user has seen nothing.
  const ada = await (await browser.newContext()).newPage();
  await ada.goto(url("/login?next=/pages/alerts"));
  await login(ada, "ada", "correct horse battery");
  await settled(ada);
  await expect(ada.locator("#nav .badge[data-badge=alerts]")).toHaveText(String(total));
  await expect(ada.locator("#panel-firings li.firing.seen")).toHaveCount(0);
  await expect(ada.locator("#panel-firings li.firing").first().locator(".message")).toHaveText(message);

  // "Mark all seen" clears vic's count: the badge goes away.
  await vic.click("#panel-firings button.mark-all");
  await expect(badge).toBeHidden();
  await expect(vic.locator("#panel-firings li.firing.unseen")).toHaveCount(0);
  await expect(ada.locator("#nav .badge[data-badge=alerts]")).toHaveText(String(total));
});
