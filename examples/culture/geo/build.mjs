// Builds world.geojson (the countries of the culture example's maps) and ../countries.csv (ISO
// 3166-1 alpha-2 to alpha-3 and English names, from i18n-iso-countries, MIT: Ticketmaster names
// countries by alpha-2, the World Bank by alpha-3) from Natural Earth's
// 1:110m countries, as redistributed by the world-atlas npm package (ISC; the data is public
// domain). Each feature gets `name` and `iso3` (ISO 3166-1 alpha-3, as the World Bank's
// `countryiso3code`); coordinates are rounded to 0.01° (about 1 km), enough for a world map.
//
//   npm install --no-save world-atlas@2.0.2 topojson-client@3.1.0 i18n-iso-countries@7.14.0
//   node build.mjs
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const topo = require("world-atlas/countries-110m.json");
const { feature } = require("topojson-client");
const countries = require("i18n-iso-countries");

// Natural Earth's disputed or unnumbered areas: their ISO code where one is in use.
const byName = { Kosovo: "XKX", "N. Cyprus": "CYN", Somaliland: "SOL" };

const round = (c) => (typeof c[0] === "number" ? c.map((x) => Math.round(x * 100) / 100) : c.map(round));
const world = feature(topo, topo.objects.countries);
const features = world.features.map((f) => ({
  type: "Feature",
  properties: {
    name: f.properties.name,
    iso3: (f.id && countries.numericToAlpha3(f.id)) || byName[f.properties.name] || null,
  },
  geometry: { type: f.geometry.type, coordinates: round(f.geometry.coordinates) },
}));
const out = { type: "FeatureCollection", features };
writeFileSync(new URL("world.geojson", import.meta.url), JSON.stringify(out) + "\n");
const rows = Object.entries(countries.getAlpha2Codes())
  .map(([a2, a3]) => [a2, a3, countries.getName(a2, "en") || ""])
  .sort();
const csv = ["iso2,iso3,name", ...rows.map((r) => r.map((c) => (/[",]/.test(c) ? `"${c.replaceAll('"', '""')}"` : c)).join(","))];
writeFileSync(new URL("../countries.csv", import.meta.url), csv.join("\n") + "\n");
const missing = features.filter((f) => !f.properties.iso3).map((f) => f.properties.name);
console.log(`${features.length} countries${missing.length ? `, without ISO code: ${missing.join(", ")}` : ""}`);
