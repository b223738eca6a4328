// "Where does this come from" in a real browser, on examples/footfall: a click on a point of the
// daily chart lists the tables and models behind it and the landing entries of the readings of
// that day; the admin opens the raw export file they came from. The entries expected come from
// `affluent query` on the same tables.
const { test, expect } = require("@playwright/test");
const path = require("node:path");
const { queryIn, loginAsAda, settled } = require("./helpers");

const url = (p) => process.env.AFFLUENT_URL + p;
const shots = path.join(__dirname, "..", "screenshots");
const query = (sql) => queryIn(process.env.AFFLUENT_PROJECT_DIR, sql);

test("a chart point's lineage opens the raw response that produced it", async ({ page }) => {
  await loginAsAda(page, process.env.AFFLUENT_URL);
  await page.goto(url("/pages/footfall?agency=lyon_2"));
  await settled(page);
  // The fourth point of the daily series, where the chart draws it.
  const at = await page.evaluate(() => {
    const el = document.querySelector("#panel-daily .chart");
    const chart = echarts.getInstanceByDom(el);
    const i = 3;
    const [x, y] = chart.convertToPixel({ seriesIndex: 0 }, [i, chart.getOption().series[0].data[i]]);
    const r = el.getBoundingClientRect();
    return { x: r.left + x, y: r.top + y };
  });
  await page.mouse.click(at.x, at.y);
  const lineage = page.locator("#lineage-daily");
  await expect(lineage.locator("h2")).toContainText("Where does this come from? date = ");
  const day = (await lineage.locator("h2").textContent()).match(/date = (\d{4}-\d{2}-\d{2})/)[1];
  for (const node of ["footfall_daily", "footfall_events", "raw_events", "api_events", "agencies"]) {
    await expect(lineage.locator(`li[data-node="${node}"]`)).toHaveCount(1);
  }
  // The entries of that day's counted readings of the agency, as the table says.
  const want = query(
    `SELECT CAST(_affluent_entry AS VARCHAR), count(*) FROM raw_events WHERE CAST(date_time AT TIME ZONE 'Europe/Paris' AS DATE) = DATE '${day}' AND agency_name <> '' AND visitor_count > 0 AND counter_id BETWEEN 0 AND 10 AND lower(unit) = 'visitors' AND closest_match(replace(lower(agency_name), ' ', '_'), (SELECT array_agg(lower(agency_name)) FROM agencies)) = 'lyon_2' GROUP BY 1 ORDER BY 1 DESC`,
  );
  expect(want.length).toBeGreaterThan(0);
  // Those readings are the day's figure: their visits sum to the point's value.
  const [sum] = query(
    `SELECT sum(visitor_count) FROM raw_events WHERE CAST(date_time AT TIME ZONE 'Europe/Paris' AS DATE) = DATE '${day}' AND agency_name <> '' AND visitor_count > 0 AND counter_id BETWEEN 0 AND 10 AND lower(unit) = 'visitors' AND closest_match(replace(lower(agency_name), ' ', '_'), (SELECT array_agg(lower(agency_name)) FROM agencies)) = 'lyon_2'`,
  );
  const [figure] = query(`SELECT sum(daily_visitor_count) FROM footfall_daily WHERE agency_name = 'lyon_2' AND date = DATE '${day}'`);
  expect(Number(sum)).toBe(Number(figure));
  const rows = lineage.locator("table.entries tbody tr");
  await expect(rows).toHaveCount(want.length);
  for (const [i, line] of want.entries()) {
    const [entry, n] = line.split(",");
    await expect(rows.nth(i)).toHaveAttribute("data-entry", entry);
    await expect(rows.nth(i).locator("td").nth(4)).toHaveText(n);
  }
  // The raw response: the export file, as landed.
  await rows.first().locator("button.raw-open").click();
  const raw = page.locator("#raw-daily");
  await expect(raw).toContainText("date_time,agency_name,counter_id,visitor_count,unit");
  await expect(raw).toContainText(".csv");
  await page.screenshot({ path: path.join(shots, "lineage.png"), fullPage: true });
});
