-- The footfall cleaning rules: drop empty names and non-positive counts, normalize names, fix
-- typos to the closest known agency.
SELECT
  closest_match(replace(lower(agency), ' ', '_'), (SELECT array_agg(name) FROM agencies)) AS agency,
  day,
  counter,
  count
FROM visits
WHERE agency IS NOT NULL AND agency <> '' AND count > 0
