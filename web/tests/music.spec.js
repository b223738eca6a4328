// examples/music-radar in a real browser: the about page without a login and the rest behind
// it, the artists grid (search, sort, order), following artists from two pages and finding
// them on "Mon profil", marking an alert seen, and the seed's theme. Expected figures come from
// `affluent query` on the same tables, not from the dashboard.
const { test, expect } = require("@playwright/test");
const { queryIn, loginAsAda, settled } = require("./helpers");
const path = require("node:path");

test.describe.configure({ mode: "serial" });

const url = (p) => process.env.AFFLUENT_MUSIC_URL + p;
const shots = path.join(__dirname, "..", "screenshots");
const query = (sql) => queryIn(process.env.AFFLUENT_MUSIC_DIR, sql);
const login = (page) => loginAsAda(page, process.env.AFFLUENT_MUSIC_URL);
const unquote = (s) => s.replace(/^"|"$/g, "").replace(/""/g, '"');

const titles = (page, panel) => page.locator(`#panel-${panel} article.tile h3`).allInnerTexts();

test("the about page needs no login; every other page does", async ({ page }) => {
  await page.goto(url("/pages/about"));
  await expect(page.locator("h1")).toHaveText("À propos");
  await expect(page.locator("#panel-text")).toContainText("Score de potentiel");
  // Only the public page is in the menu, with a way to log in.
  await expect(page.locator("#nav a")).toHaveText(["À propos", "Log in"]);
  // The seed's colours: a black page, pink links, gold text.
  const colours = await page.evaluate(() => {
    const s = getComputedStyle(document.body);
    return { bg: s.backgroundColor, fg: s.color, accent: getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() };
  });
  expect(colours).toEqual({ bg: "rgb(7, 7, 7)", fg: "rgb(177, 142, 87)", accent: "#FF1B8D" });
  await page.screenshot({ path: path.join(shots, "music-about.png"), fullPage: true });
  for (const p of ["overview", "artists", "alerts", "profile"]) {
    await page.goto(url(`/pages/${p}`));
    await expect(page).toHaveURL(/\/login\?next=/);
  }
});

test("the artists grid searches, sorts and orders", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/artists"));
  await settled(page);
  // Default: by score, descending; the first page of 24 cards.
  const byScore = query("SELECT artist FROM radar ORDER BY score DESC, artist DESC LIMIT 24").map(unquote);
  await expect.poll(() => titles(page, "grid")).toEqual(byScore);
  await expect(page.locator("#panel-grid .pager .muted")).toHaveText(`1–24 of ${query("SELECT count(*) FROM radar")[0]}`);
  // Sorted by followers, ascending.
  await page.selectOption("#filter-sort", "followers");
  await page.selectOption("#filter-order", "croissant");
  await settled(page);
  const byAudience = query("SELECT artist FROM radar ORDER BY fans_followers ASC, artist ASC LIMIT 24").map(unquote);
  await expect.poll(() => titles(page, "grid")).toEqual(byAudience);
  // Search: one artist only; "All" brings them back.
  const [id, name] = query("SELECT artist_id, artist FROM radar ORDER BY score DESC LIMIT 1")[0].split(",").map(unquote);
  await page.selectOption("#filter-artist", id);
  await settled(page);
  await expect.poll(() => titles(page, "grid")).toEqual([name]);
  await page.screenshot({ path: path.join(shots, "music-artist.png"), fullPage: true });
  await page.selectOption("#filter-artist", "*");
  await settled(page);
  await expect.poll(async () => (await titles(page, "grid")).length).toBe(24);
  // Each card: a photo or, offline, the artist's initials; a link to the artist's evolution.
  const card = page.locator("#panel-grid article.tile").first();
  await expect(card.locator("img.thumb, .avatar")).toHaveCount(1);
  await expect(card.locator("a.cell-link", { hasText: "évolution" })).toHaveAttribute("href", /^\/pages\/evolution\?artist=/);
});

test("artists followed from two pages are both on Mon profil", async ({ page }) => {
  await login(page);
  // From the artists grid: the first card.
  await page.goto(url("/pages/artists"));
  await settled(page);
  const first = page.locator("#panel-grid article.tile").first();
  const fromGrid = await first.locator("h3").innerText();
  await first.locator("input.toggle").check();
  await expect(first.locator("input.toggle")).toBeChecked();
  // From the predictions: the top prediction that is not the same artist.
  await page.goto(url("/pages/predictions"));
  await settled(page);
  const tiles = page.locator("#panel-top10 article.tile");
  await expect(tiles).toHaveCount(10);
  const other = tiles.filter({ hasNot: page.locator("h3", { hasText: new RegExp(`^${fromGrid.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }) }).first();
  const fromPredictions = await other.locator("h3").innerText();
  await other.locator("input.toggle").check();
  await settled(page);
  // Both on the profile, in the panel and its count; the state is the server's (a reload).
  await page.goto(url("/pages/profile"));
  await settled(page);
  await expect.poll(async () => (await titles(page, "following")).sort()).toEqual([fromGrid, fromPredictions].sort());
  await expect(page.locator("#panel-count .kpi-value")).toHaveText("2");
  await page.screenshot({ path: path.join(shots, "music-profile.png"), fullPage: true });
  // Ticked everywhere: the grid shows the first one followed.
  await page.goto(url("/pages/artists"));
  await settled(page);
  await expect(page.locator("#panel-grid article.tile").first().locator("input.toggle")).toBeChecked();
  // Unfollowed from the profile itself: the card goes.
  await page.goto(url("/pages/profile"));
  await settled(page);
  await page.locator("#panel-following article.tile", { hasText: fromPredictions }).locator("input.toggle").uncheck();
  await settled(page);
  await expect.poll(() => titles(page, "following")).toEqual([fromGrid]);
  await expect(page.locator("#panel-count .kpi-value")).toHaveText("1");
});

test("the evolution page shows an artist's days and its five similar artists", async ({ page }) => {
  await login(page);
  const [id] = query("SELECT artist_id FROM radar ORDER BY score DESC LIMIT 1")[0].split(",").map(unquote);
  await page.goto(url(`/pages/evolution?artist=${encodeURIComponent(id)}`));
  await settled(page);
  const similar = query(`SELECT r.artist FROM similar_artists s JOIN radar r ON r.artist_id = s.neighbour_artist_id WHERE s.artist_id = '${id}' ORDER BY s.rank`).map(unquote);
  expect(similar.length).toBe(5);
  await expect.poll(() => titles(page, "similar")).toEqual(similar);
  const days = Number(query(`SELECT count(*) FROM history WHERE artist_id = '${id}'`)[0]);
  const points = await page.evaluate(() => {
    const chart = echarts.getInstanceByDom(document.querySelector("#panel-audience .chart"));
    return chart.getOption().series.map((s) => s.data.length);
  });
  expect(points[0]).toBe(days);
  expect(days).toBe(60);
});

test("an alert marked seen goes after the unseen ones and stays seen", async ({ page }) => {
  await login(page);
  await page.goto(url("/pages/alerts"));
  await settled(page);
  const total = Number(query("SELECT count(*) FROM alert_firings")[0]);
  expect(total).toBeGreaterThan(10);
  await expect(page.locator("#panel-firings .unseen-count")).toHaveText(`${total} unseen of ${total}`);
  const first = page.locator("#panel-firings li.firing").first();
  const message = await first.locator(".message").innerText();
  expect(message).toMatch(/ : (croissance|baisse) de .* des followers \(.* → .*\)| : score de potentiel en hausse| : artiste en pleine ascension| : 100k followers atteints/);
  await first.locator("button.mark-seen").click();
  // Seen firings go after the unseen ones: past the panel's 200, out of the list.
  await expect(page.locator("#panel-firings .unseen-count")).toHaveText(`${total - 1} unseen of ${total}`);
  await expect(page.locator("#panel-firings li.firing.seen")).toHaveCount(0);
  await page.reload();
  await settled(page);
  await expect(page.locator("#panel-firings .unseen-count")).toHaveText(`${total - 1} unseen of ${total}`);
  await expect(page.locator("#panel-firings li.firing").first()).toHaveClass(/unseen/);
  // The menu's badge counts the unseen ones.
  await expect(page.locator('#nav .badge[data-badge="alerts"]')).toHaveText(String(total - 1));
  await page.screenshot({ path: path.join(shots, "music-alerts.png"), fullPage: true });
});
