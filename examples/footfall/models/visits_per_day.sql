-- Daily visits per agency and counter from the raw exports.
SELECT
  CAST(date_time AT TIME ZONE 'Europe/Paris' AS DATE) AS date,
  closest_match(
    replace(lower(trim(agency_name)), ' ', '_'),
    (SELECT array_agg(lower(agency_name)) FROM agencies)
  ) AS agency_name,
  counter_id,
  sum(visitor_count) AS visits
FROM footfall_events
WHERE agency_name IS NOT NULL AND trim(agency_name) <> ''
  AND visitor_count > 0
  AND lower(unit) = 'visitors'
GROUP BY 1, 2, 3
