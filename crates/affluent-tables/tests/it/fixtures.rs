//! Every real capture loads into a table with exact row counts, spot-checked values and the
//! natural keys the seeds use; loading again changes nothing.

use affluent_tables::LoadScope;

use crate::support::{TestProject, fixture};

const PROJECT: &str = r#"
timezone = "Europe/Paris"

[sources.tm_events]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
endpoint.data_selector = "_embedded.events"

[sources.matches]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
endpoint.data_selector = "matches"

[sources.wb_gdp]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
endpoint.data_selector = "[1]"

[sources.velib_availability]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[sources.gbfs_status]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
endpoint.data_selector = "data.stations"

[sources.gbfs_info]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
endpoint.data_selector = "data.stations"

[sources.weather]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[sources.artists]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
endpoint.data_selector = "artists"

[tables.events]
source = "tm_events"
write = "merge"
primary_key = ["name", "date"]
[tables.events.columns]
id = "id"
name = { path = "name", type = "string" }
date = { path = "dates.start.localDate", type = "date" }
starts_at = { path = "dates.start.dateTime", type = "timestamp" }
city = "_embedded.venues[0].city.name"
venue = "_embedded.venues[0].name"
segment = "classifications[0].segment.name"

[tables.matches]
source = "matches"
write = "merge"
primary_key = ["home", "away", "utc_date"]
[tables.matches.columns]
home = "homeTeam.name"
away = "awayTeam.name"
utc_date = { path = "utcDate", type = "timestamp" }
competition = "competition.code"
status = "status"
home_goals = { path = "score.fullTime.home", type = "int" }
away_goals = { path = "score.fullTime.away", type = "int" }

[tables.gdp]
source = "wb_gdp"
write = "merge"
primary_key = ["country", "indicator", "year"]
[tables.gdp.columns]
country = "country.id"
country_name = "country.value"
indicator = "indicator.id"
year = { path = "date", type = "int" }
value = { path = "value", type = "float" }

[tables.velib]
source = "velib_availability"
write = "merge"
primary_key = ["stationcode", "duedate"]
[tables.velib.columns]
stationcode = "stationcode"
duedate = { path = "duedate", type = "timestamp" }
name = "name"
capacity = { path = "capacity", type = "int" }
bikes = { path = "numbikesavailable", type = "int" }
ebike = { path = "ebike", type = "int" }
lat = { path = "coordonnees_geo.lat", type = "float" }
lon = { path = "coordonnees_geo.lon", type = "float" }

# No columns declared: every field, inferred.
[tables.station_status]
source = "gbfs_status"
write = "merge"
primary_key = ["station_id", "last_reported"]

[tables.station_information]
source = "gbfs_info"
write = "replace"

[tables.weather_hourly]
source = "weather"
write = "merge"
primary_key = ["time"]
explode = "hourly"
[tables.weather_hourly.columns]
time = { path = "time", type = "timestamp" }
temperature = { path = "temperature_2m_ecmwf_ifs025", type = "float" }
latitude = { path = "$.latitude", type = "float" }

[tables.artists]
source = "artists"
write = "merge"
primary_key = ["id"]
[tables.artists.columns]
id = "id"
name = "name"
followers = { path = "followers.total", type = "int" }
popularity = { path = "popularity", type = "int" }
genres = { path = "genres", type = "json" }
"#;

async fn load_all(p: &TestProject) {
    for source in p.warehouse.project().sources.keys() {
        for r in p
            .warehouse
            .load_source(source, &LoadScope::Pending)
            .await
            .unwrap()
        {
            assert!(r.errors.is_empty(), "{r:?}");
            assert_eq!(r.quarantined, 0, "{r:?}");
        }
    }
}

#[tokio::test]
async fn every_capture_loads_with_exact_counts_and_natural_keys() {
    let p = TestProject::new(PROJECT);
    let land = |source: &str, file: &str| p.land(source, "run1", &fixture(file));
    land(
        "tm_events",
        "ticketmaster/events_US_page0_2020_zachbrown12.json",
    );
    land(
        "matches",
        "football-data/teams_65_matches_PL-CL_2023-24_CRLLNKhoa.json",
    );
    land(
        "wb_gdp",
        "worldbank/v2_country_bra_NY.GDP.MKTP.CD_2025-09-13_wbstats.json",
    );
    land(
        "wb_gdp",
        "worldbank/v2_country_chn_NY.GDP.MKTP.CD_2021-09_nataliephillips.json",
    );
    land(
        "velib_availability",
        "opendatasoft/v2.1-export-list_velib-disponibilite_1471_2024-05-28_anthonybellon_prettier.json",
    );
    land(
        "gbfs_status",
        "velib-gbfs/station_status_2025-10-18_dariusbengo.json",
    );
    land(
        "gbfs_info",
        "velib-gbfs/station_information_2025-10-18_dariusbengo.json",
    );
    land(
        "weather",
        "weather/open-meteo_v1_forecast_multimodel_hourly168_2025-11-24_TheLuck1987.json",
    );
    land(
        "artists",
        "spotify/v1_artists_ids_2artists_2026-02_vedantr98.json",
    );
    load_all(&p).await;

    let expected = [
        ("events", 20),
        ("matches", 46),
        ("gdp", 126),
        ("velib", 1471),
        ("station_status", 1495),
        ("station_information", 1495),
        ("weather_hourly", 168),
        ("artists", 2),
    ];
    for (table, rows) in expected {
        assert_eq!(p.count(table).await, rows, "{table}");
    }

    // Spot checks, typed.
    assert_eq!(
        p.scalar("SELECT city FROM events WHERE name = 'LA Clippers vs. Los Angeles Lakers' AND date = DATE '2020-03-08'").await,
        "Los Angeles"
    );
    assert_eq!(
        p.scalar("SELECT home_goals || '-' || away_goals FROM matches WHERE home = 'Burnley FC' AND away = 'Manchester City FC'").await,
        "0-3"
    );
    assert_eq!(
        p.scalar("SELECT CAST(utc_date AS VARCHAR) FROM matches WHERE home = 'Burnley FC' AND away = 'Manchester City FC'").await,
        "2023-08-11T19:00:00Z"
    );
    assert_eq!(
        p.scalar("SELECT value FROM gdp WHERE country = 'BR' AND year = 2024")
            .await,
        "2179412080828.59"
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT country) FROM gdp").await,
        "2"
    );
    assert_eq!(
        p.scalar("SELECT bikes || '/' || capacity FROM velib WHERE stationcode = '16107'")
            .await,
        "15/35"
    );
    // Inferred: nested arrays as JSON text, camelCase as snake_case, numbers typed.
    assert_eq!(
        p.scalar(
            "SELECT num_bikes_available_types FROM station_status WHERE station_id = 213688169"
        )
        .await,
        "\"[{\"\"mechanical\"\":1},{\"\"ebike\"\":4}]\""
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM station_status s JOIN station_information i ON s.station_id = i.station_id").await,
        "1495"
    );
    assert_eq!(
        p.scalar("SELECT arrow_typeof(last_reported) FROM station_status LIMIT 1")
            .await,
        "Int64"
    );
    // Open-Meteo's parallel arrays, one row per hour, with a field of the whole response.
    assert_eq!(
        p.scalar("SELECT count(DISTINCT latitude) FROM weather_hourly")
            .await,
        "1"
    );
    assert_eq!(
        p.scalar("SELECT followers FROM artists WHERE name = 'Kendrick Lamar'")
            .await,
        "34778236"
    );

    // Loading again takes nothing; landing the same captures again (a re-fetch) and loading
    // merges them onto the same keys: the counts do not move.
    load_all(&p).await;
    land(
        "tm_events",
        "ticketmaster/events_US_page0_2020_zachbrown12.json",
    );
    land(
        "matches",
        "football-data/teams_65_matches_PL-CL_2023-24_CRLLNKhoa.json",
    );
    land(
        "wb_gdp",
        "worldbank/v2_country_bra_NY.GDP.MKTP.CD_2025-09-13_wbstats.json",
    );
    land(
        "gbfs_info",
        "velib-gbfs/station_information_2025-10-18_dariusbengo.json",
    );
    land(
        "gbfs_status",
        "velib-gbfs/station_status_2025-10-18_dariusbengo.json",
    );
    load_all(&p).await;
    for (table, rows) in expected {
        assert_eq!(p.count(table).await, rows, "{table} after a second load");
    }
    let report = p
        .warehouse
        .load_source("tm_events", &LoadScope::Pending)
        .await
        .unwrap();
    assert_eq!(report[0].entries, 0, "nothing pending");
}
