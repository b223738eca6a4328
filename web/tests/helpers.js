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

module.exports = { queryIn, loginAsAda, settled };
