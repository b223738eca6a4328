// examples/belib-weather in a real browser: the map of charging points by status over the
// offline arrondissements, and availability against the weather on two axes. Expected figures
// come from `affluent query` on the same tables, not from the dashboard.
const { test, expect } = require("@playwright/test");
const { queryIn, loginAsAda, settled, chartOption } = require("./helpers");
const path = require("node:path");

test.describe.configure({ mode: "serial" });

const url = (p) => process.env.AFFLUENT_BELIB_URL + p;
const shots = path.join(__dirname, "..", "screenshots");

const query = (sql) => queryIn(process.env.AFFLUENT_BELIB_DIR, sql);
const login = (page) => loginAsAda(page, process.env.AFFLUENT_BELIB_URL);

const option = chartOption;

test("the map shows every charging point, coloured by status, over the arrondissements", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/map"));
  await settled(page);
  const o = await option(page, "points");
  expect(o, "a chart").not.toBeNull();
  expect(o.geo).toEqual(["points-geo"]);
  // One series per status, with as many points as the latest snapshot has in that status.
  const want = Object.fromEntries(query("SELECT status, count(*) FROM belib_latest GROUP BY status").map((l) => {
    const i = l.lastIndexOf(",");
    return [l.slice(0, i).replace(/^"|"$/g, ""), Number(l.slice(i + 1))];
  }));
  const got = Object.fromEntries(o.series.map((s) => [s.name, s.n]));
  expect(got).toEqual(want);
  expect(Object.values(got).reduce((a, b) => a + b, 0)).toBe(1937);
  expect(o.series.find((s) => s.name === "Disponible").color).toBe("#2e7d32");
  expect(o.series.find((s) => s.name === "En maintenance").color).toBe("#c62828");
  await expect(page.locator("#panel-points .panel-note")).toHaveText(/Arrondissements: Ville de Paris, Open Data, ODbL/);
  const available = query("SELECT count(*) FROM belib_latest WHERE status = 'Disponible'")[0];
  const shown = await page.locator("#panel-available .kpi-value").innerText();
  expect(Number(shown.replace(/\D/g, ""))).toBe(Number(available));
  await page.screenshot({ path: path.join(shots, "belib-map.png"), fullPage: true });

  // An arrondissement: only its points.
  await page.selectOption("#filter-arrondissement", "15e Arrondissement");
  await settled(page);
  const fifteen = Number(query("SELECT count(*) FROM belib_latest WHERE arrondissement = '15e Arrondissement'")[0]);
  // The panel is redrawn after the filter's requests: wait for its new points.
  await expect
    .poll(async () => (await option(page, "points")).series.reduce((a, s) => a + s.n, 0))
    .toBe(fifteen);
});

test("availability is drawn against the weather on a second axis, day by day", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/availability"));
  await settled(page);
  const o = await option(page, "daily");
  expect(o.yAxes).toBe(2);
  const days = query("SELECT count(DISTINCT date) FROM belib_daily")[0];
  const byName = Object.fromEntries(o.series.map((s) => [s.name, s]));
  expect(byName.available_pct.axis).toBe(0);
  expect(byName.temp_max.axis).toBe(1);
  expect(byName.rain_mm.axis).toBe(1);
  expect(byName.available_pct.n).toBe(Number(days));
  // The first day's figures are the model's.
  const [first] = query("SELECT round(100 * sum(available) / sum(reported), 1), max(temp_max) FROM belib_weather_daily GROUP BY date ORDER BY date LIMIT 1");
  const [rate, tmax] = first.split(",").map(Number);
  expect(byName.available_pct.first).toBeCloseTo(rate, 5);
  expect(byName.temp_max.first).toBeCloseTo(tmax, 5);
  expect(byName.temp_max.color).toBe("#d84315");
  await page.screenshot({ path: path.join(shots, "belib-availability.png"), fullPage: true });
});
