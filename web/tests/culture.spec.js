// examples/culture in a real browser: the venues on the offline world map, GDP by country as a
// choropleth, the standings derived from the matches, and the GDP forecast with its interval.
// Expected figures come from `affluent query` on the same tables, not from the dashboard.
const { test, expect } = require("@playwright/test");
const { queryIn, loginAsAda, settled, chartOption } = require("./helpers");
const fs = require("node:fs");
const path = require("node:path");

test.describe.configure({ mode: "serial" });

const url = (p) => process.env.AFFLUENT_CULTURE_URL + p;
const shots = path.join(__dirname, "..", "screenshots");
const query = (sql) => queryIn(process.env.AFFLUENT_CULTURE_DIR, sql);
const login = (page) => loginAsAda(page, process.env.AFFLUENT_CULTURE_URL);
const unquote = (s) => s.replace(/^"|"$/g, "").replace(/""/g, '"');
const world = JSON.parse(fs.readFileSync(path.join(__dirname, "../../examples/culture/geo/world.geojson")));

const option = chartOption;

test("the venues are points on the offline world map, by category", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/events"));
  await settled(page);
  const o = await option(page, "map");
  expect(o, "a chart").not.toBeNull();
  expect(o.geo).toEqual(["map-geo"]);
  const want = Object.fromEntries(
    query("SELECT coalesce(segment, 'Undefined'), count(*) FROM events WHERE lon IS NOT NULL GROUP BY 1").map((l) => {
      const i = l.lastIndexOf(",");
      return [unquote(l.slice(0, i)), Number(l.slice(i + 1))];
    }),
  );
  expect(Object.keys(want).length).toBeGreaterThan(1);
  expect(Object.fromEntries(o.series.map((s) => [s.name, s.n]))).toEqual(want);
  // Each point where its venue is (the first event's coordinates, to the digit).
  const [lon, lat] = query("SELECT lon, lat FROM events WHERE lon IS NOT NULL ORDER BY name LIMIT 1")[0].split(",").map(Number);
  const points = o.series.flatMap((s) => s.data);
  expect(points.some((p) => Math.abs(p[0] - lon) < 1e-9 && Math.abs(p[1] - lat) < 1e-9)).toBe(true);
  await expect(page.locator("#panel-map .panel-note")).toHaveText(/Natural Earth/);
  await page.screenshot({ path: path.join(shots, "culture-events-map.png"), fullPage: true });
  // One category: only its points.
  await page.selectOption("#filter-segment", "Music");
  await settled(page);
  await expect.poll(async () => (await option(page, "map")).series.map((s) => [s.name, s.n])).toEqual([["Music", want.Music]]);
});

test("GDP by country is a choropleth of the world's countries", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/economy"));
  await settled(page);
  const want = Object.fromEntries(
    query(
      "SELECT country, round(gdp / 1e9, 1) FROM (SELECT country, gdp, row_number() OVER (PARTITION BY country ORDER BY year DESC) AS n FROM gdp_growth) WHERE n = 1",
    ).map((l) => [l.split(",")[0], Number(l.split(",")[1])]),
  );
  const o = await option(page, "choropleth");
  expect(o.series[0].type).toBe("map");
  expect(o.visualMap).toBe(1);
  expect(Object.fromEntries(o.series[0].data)).toEqual(want);
  // Every country coloured is a polygon of the shipped map.
  const codes = new Set(world.features.map((f) => f.properties.iso3));
  for (const c of Object.keys(want)) expect(codes.has(c), `${c} on the map`).toBe(true);
  await page.screenshot({ path: path.join(shots, "culture-gdp-choropleth.png"), fullPage: true });
});

test("the standings follow from the finished matches, and a competition shows only its own", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/football"));
  await settled(page);
  const rows = () => page.locator("#panel-standings tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.innerText.trim())));
  const leader = query("SELECT competition, team, points FROM standings ORDER BY competition, rank, team LIMIT 1")[0].split(",").map(unquote);
  await expect.poll(async () => (await rows())[0].slice(0, 3)).toEqual([leader[0], "1", leader[1]]);
  expect((await rows())[0].at(-1)).toBe(leader[2]);
  const competition = unquote(query("SELECT DISTINCT competition FROM matches ORDER BY 1 DESC LIMIT 1")[0]);
  await page.selectOption("#filter-competition", competition);
  await settled(page);
  const teams = Number(query(`SELECT count(*) FROM standings WHERE competition = '${competition}'`)[0]);
  await expect.poll(async () => (await rows()).map((r) => r[0])).toEqual(Array(Math.min(teams, 25)).fill(competition));
  await page.screenshot({ path: path.join(shots, "culture-standings.png"), fullPage: true });
});

test("each country's GDP is drawn with its forecast and interval", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/economy"));
  await settled(page);
  await page.selectOption("#filter-country", "BRA");
  await settled(page);
  const names = async () => ((await option(page, "gdp")) || { series: [] }).series.map((s) => s.name).sort();
  await expect.poll(names).toEqual(["BRA borne basse", "BRA borne haute", "BRA observé", "BRA prévu"]);
  const o = await option(page, "gdp");
  await page.screenshot({ path: path.join(shots, "culture-gdp-forecast.png"), fullPage: true });
  const forecast = o.series.find((s) => s.name === "BRA prévu");
  const steps = query("SELECT count(*) FROM gdp_forecast WHERE country = 'BRA'")[0];
  const value = (d) => (Array.isArray(d) ? d[1] : d);
  const drawn = (s) => s.data.filter((d) => d != null && value(d) != null).length;
  expect(drawn(forecast)).toBe(Number(steps));
  // The interval holds the forecast at every step.
  const at = (name) => o.series.find((s) => s.name === name).data.map((d) => (d == null ? null : value(d)));
  const [low, mid, high] = ["BRA borne basse", "BRA prévu", "BRA borne haute"].map(at);
  mid.forEach((m, i) => m != null && expect(low[i] < m && m < high[i]).toBe(true));
  const observed = Number(query("SELECT count(*) FROM gdp_growth WHERE country = 'BRA'")[0]);
  expect(drawn(o.series.find((s) => s.name === "BRA observé"))).toBe(observed);
});
