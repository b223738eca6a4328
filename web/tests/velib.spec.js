// examples/velib in a real browser: the map of stations by state over the offline
// arrondissements, and the same map and windows brought up to date, without a reload, when a
// new poll is landed and windowed. Expected figures come from `affluent query` on the same
// tables, not from the dashboard.
const { test, expect } = require("@playwright/test");
const { execFileSync, spawn } = require("node:child_process");
const path = require("node:path");
const { queryIn, loginAsAda, settled } = require("./helpers");

test.describe.configure({ mode: "serial" });

const url = (p) => process.env.AFFLUENT_VELIB_URL + p;
const shots = path.join(__dirname, "..", "screenshots");

function affluent(args, env) {
  return execFileSync(process.env.AFFLUENT_BIN, ["--project", process.env.AFFLUENT_VELIB_DIR, ...args], {
    env: { ...process.env, ...env },
  }).toString();
}

const query = (sql) => queryIn(process.env.AFFLUENT_VELIB_DIR, sql);
const login = (page) => loginAsAda(page, process.env.AFFLUENT_VELIB_URL);

function counts(sql) {
  return Object.fromEntries(query(sql).map((l) => {
    const i = l.lastIndexOf(",");
    return [l.slice(0, i).replace(/^"|"$/g, ""), Number(l.slice(i + 1))];
  }));
}

// Points per series of the map panel.
async function mapSeries(page) {
  return page.evaluate(() => {
    const el = document.querySelector("#panel-map .chart");
    const chart = el && echarts.getInstanceByDom(el);
    if (!chart) return null;
    const o = chart.getOption();
    return { geo: (o.geo || []).map((g) => g.map), series: Object.fromEntries(o.series.map((s) => [s.name, s.data.length])) };
  });
}

test("the map shows every station by state, and a zone only its own", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/live"));
  await settled(page);
  const o = await mapSeries(page);
  expect(o, "a chart").not.toBeNull();
  expect(o.geo).toEqual(["map-geo"]);
  expect(o.series).toEqual(counts("SELECT state, count(*) FROM stations GROUP BY state"));
  expect(Object.values(o.series).reduce((a, b) => a + b, 0)).toBe(1471);
  await expect(page.locator("#panel-map .panel-note")).toHaveText(/Arrondissements: Ville de Paris, Open Data, ODbL/);
  const bikes = query("SELECT sum(bikes) FROM stations")[0];
  const shown = await page.locator("#panel-bikes .kpi-value").innerText();
  expect(Number(shown.replace(/\D/g, ""))).toBe(Number(bikes));
  await page.screenshot({ path: path.join(shots, "velib-map.png"), fullPage: true });

  await page.selectOption("#filter-zone", "15ème Ardt");
  await settled(page);
  const fifteen = Number(query("SELECT count(*) FROM stations WHERE zone = '15ème Ardt'")[0]);
  expect(fifteen).toBeGreaterThan(50);
  await expect
    .poll(async () => Object.values((await mapSeries(page)).series).reduce((a, b) => a + b, 0))
    .toBe(fifteen);
  await expect(page.locator("#panel-stations .kpi-value")).toHaveText(String(fifteen));
});

test("the arrondissements are coloured by the occupancy of their latest final window", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/live"));
  await settled(page);
  const regions = () => page.evaluate(() => {
    const el = document.querySelector("#panel-choropleth .chart");
    const chart = el && echarts.getInstanceByDom(el);
    if (!chart) return null;
    const o = chart.getOption();
    return { type: o.series[0].type, visualMap: o.visualMap.length, data: Object.fromEntries(o.series[0].data.map((d) => [d.name, d.value])) };
  });
  const want = counts(`SELECT zone, round(occupancy, 3) FROM zone_3min WHERE is_final AND zone LIKE '%Ardt'
    AND window_start = (SELECT max(window_start) FROM zone_3min WHERE is_final)`);
  expect(Object.keys(want).length).toBe(20);
  await expect.poll(regions).toEqual({ type: "map", visualMap: 1, data: want });
  // Every name is one of the GeoJSON's polygons (the map colours only those it finds).
  const geo = JSON.parse(require("node:fs").readFileSync(path.join(process.env.AFFLUENT_VELIB_DIR, "geo", "paris_arrondissements.geojson")));
  const names = new Set(geo.features.map((f) => f.properties.l_ar));
  expect(Object.keys(want).filter((n) => !names.has(n))).toEqual([]);
});

test("the outlook map colours each station by its chance of filling within 30 minutes", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/outlook"));
  await settled(page);
  const o = await mapSeries(page);
  expect(o, "a chart").not.toBeNull();
  const want = counts("SELECT outlook, count(*) FROM full_soon GROUP BY outlook");
  expect(o.series).toEqual(want);
  expect(Object.values(o.series).reduce((a, b) => a + b, 0)).toBe(Number(query("SELECT count(*) FROM full_soon")[0]));
  const auc = Number(query("SELECT round(roc_auc, 2) FROM ml_models WHERE model = 'full_in_30min' ORDER BY version DESC LIMIT 1")[0]);
  expect(auc, "better than chance").toBeGreaterThan(0.5);
  const shown = await page.locator("#panel-auc .kpi-value").innerText();
  expect(Number(shown.replace(",", "."))).toBe(auc);
  await page.screenshot({ path: path.join(shots, "velib-outlook.png"), fullPage: true });
});

test("the station picker shows one station's 3-minute series", async ({ page }) => {
  await login(page);
  const code = query("SELECT stationcode FROM stations WHERE name LIKE 'Jussieu%' ORDER BY 1 LIMIT 1")[0];
  expect(code, "a station").toBeTruthy();
  await page.goto(url("/pages/station"));
  await settled(page);
  await page.selectOption("#filter-station", code);
  await settled(page);
  const want = Number(query(`SELECT count(*) FROM (SELECT * FROM station_3min UNION ALL SELECT * FROM station_3min_open) WHERE stationcode = '${code}'`)[0]);
  expect(want).toBeGreaterThan(10);
  const points = () => page.evaluate(() => {
    const el = document.querySelector("#panel-series .chart");
    const chart = el && echarts.getInstanceByDom(el);
    return chart ? chart.getOption().series.map((s) => [s.name, s.data.length]) : null;
  });
  await expect.poll(points).toEqual([["mechanical", want], ["ebike", want], ["docks", want]]);
  const name = query(`SELECT name FROM stations WHERE stationcode = '${code}'`)[0].replace(/^"|"$/g, "");
  await expect(page.locator("#panel-now table")).toContainText(name);
  await page.screenshot({ path: path.join(shots, "velib-station.png"), fullPage: true });
});

test("a new poll reaches the open page: the map and the windows follow without a reload", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/live"));
  await settled(page);
  const before = await page.locator("#panel-late table").innerText();
  const windowsBefore = Number(query("SELECT count(*) FROM station_3min")[0]);

  // The simulator twenty minutes on; one poll landed, windowed and modelled.
  const sim = spawn(process.env.AFFLUENT_BIN, ["simulate", "velib", "--port", "0", "--at", "2025-03-03T09:20:00Z"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    const simUrl = await new Promise((resolve, reject) => {
      let out = "";
      sim.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) resolve(out.split("\n")[0].trim());
      });
      sim.on("exit", (code) => reject(new Error(`simulator exited (${code})`)));
    });
    const ingest = affluent(["ingest", "velib"], { VELIB_API_URL: simUrl });
    expect(ingest).toMatch(/stream station_3min: read versions/);
    affluent(["transform"]);
  } finally {
    sim.kill("SIGTERM");
  }
  const windowsAfter = Number(query("SELECT count(*) FROM station_3min")[0]);
  expect(windowsAfter, "the poll closed windows").toBeGreaterThan(windowsBefore);

  // The page redraws from the server's change event: the map has the new states.
  const want = counts("SELECT state, count(*) FROM stations GROUP BY state");
  await expect.poll(async () => (await mapSeries(page)).series, { timeout: 20_000 }).toEqual(want);
  await expect.poll(async () => page.locator("#panel-late table").innerText(), { timeout: 20_000 }).not.toBe(before);
  await page.screenshot({ path: path.join(shots, "velib-live.png"), fullPage: true });
});
