// Browser tests of the dashboard: Debian's Chromium (no browser download), driven by
// Playwright, against `affluent serve` on a copy of examples/footfall (see tests/global-setup.js).
const { defineConfig } = require("@playwright/test");

module.exports = defineConfig({
  testDir: "tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  workers: 1,
  fullyParallel: false,
  reporter: [["list"]],
  globalSetup: require.resolve("./tests/global-setup.js"),
  use: {
    browserName: "chromium",
    headless: true,
    viewport: { width: 1400, height: 1000 },
    acceptDownloads: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
      args: ["--no-sandbox"],
    },
  },
});
