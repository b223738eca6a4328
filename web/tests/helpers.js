// What the browser tests share: reading the tables with `affluent query`, logging in, and
// waiting until a page's panels are drawn.
const { expect } = require("@playwright/test");
const { execFileSync } = require("node:child_process");

// The rows (without the header) of a query over the project in `dir`, as CSV lines.
function queryIn(dir, sql) {
  const out = execFileSync(process.env.AFFLUENT_BIN, ["--project", dir, "query", "--format", "csv", sql]);
  return out.toString().trim().split("\n").slice(1);
}

// Logs in as the admin the global setup created on the dashboard at `base`.
async function loginAsAda(page, base) {
  await page.goto(base + "/login");
  await page.fill("input[name=name]", "ada");
  await page.fill("input[name=password]", "correct horse battery");
  await page.click("button[type=submit]");
  await expect(page.locator("h1")).not.toHaveText("Log in");
}

// No panel still loading, no request in flight.
async function settled(page) {
  await expect(page.locator(".panel.loading")).toHaveCount(0);
  await page.waitForLoadState("networkidle");
}

// The ECharts option of a panel's chart, reduced to what the tests compare: the GeoJSON maps
// drawn, the axes and visual maps, and per series its name, type, points (`data`: a map's as
// [name, value], the others' values), axis, colour and first point.
async function chartOption(page, panel) {
  return page.evaluate((id) => {
    const el = document.querySelector(`#panel-${id} .chart`);
    const chart = el && echarts.getInstanceByDom(el);
    if (!chart) return null;
    const o = chart.getOption();
    const value = (d) => (d !== null && typeof d === "object" && !Array.isArray(d) ? d.value : d);
    return {
      geo: (o.geo || []).map((g) => g.map),
      yAxes: (o.yAxis || []).length,
      visualMap: (o.visualMap || []).length,
      series: o.series.map((s) => ({
        name: s.name,
        type: s.type,
        n: s.data.length,
        data: s.type === "map" ? s.data.map((d) => [d.name, d.value]) : s.data.map(value),
        axis: s.yAxisIndex || 0,
        color: s.itemStyle && s.itemStyle.color,
        first: s.data[0],
      })),
    };
  }, panel);
}

module.exports = { queryIn, loginAsAda, settled, chartOption };
