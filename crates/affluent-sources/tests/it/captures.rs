//! The real captures in `shared/fixtures` served as their APIs page them, for the tests of
//! every paginator (`fixtures.rs`) and of cassettes (`cassettes.rs`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::*;

pub(crate) fn page_of(items: &[Value], start: usize, size: usize) -> Vec<Value> {
    items.iter().skip(start).take(size).cloned().collect()
}

/// World Bank v2 GDP of Brazil (65 records) and China (61), `per_page` and `page` (from 1),
/// the total of pages in `[0].pages`.
pub(crate) fn world_bank_gdp() -> Handler {
    let bra = fixture_json("worldbank/v2_country_bra_NY.GDP.MKTP.CD_2025-09-13_wbstats.json");
    let chn = fixture_json("worldbank/v2_country_chn_NY.GDP.MKTP.CD_2021-09_nataliephillips.json");
    Arc::new(move |hit: &Hit| {
        let data = if hit.path.contains("/bra/") {
            &bra
        } else {
            &chn
        };
        let records = data[1].as_array().unwrap();
        let per_page: usize = hit.query["per_page"].parse().unwrap();
        let page: usize = hit.query["page"].parse().unwrap();
        let pages = records.len().div_ceil(per_page);
        json(
            200,
            &json!([{"page": page, "pages": pages, "per_page": per_page, "total": records.len()},
            page_of(records, (page - 1) * per_page, per_page)]),
        )
    })
}

/// Ticketmaster Discovery v2: the US capture's 20 events, `size` and `page` (from 0), refused
/// without the `apikey`; `_links` echo the key, as the real API does.
pub(crate) fn ticketmaster_events(key: &'static str) -> Handler {
    let tm = fixture_json("ticketmaster/events_US_page0_2020_zachbrown12.json");
    let events = tm["_embedded"]["events"].as_array().unwrap().clone();
    Arc::new(move |hit: &Hit| {
        if hit.query.get("apikey").map(String::as_str) != Some(key) {
            return json(
                401,
                &json!({"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}),
            );
        }
        let size: usize = hit.query["size"].parse().unwrap();
        let page: usize = hit.query["page"].parse().unwrap();
        json(
            200,
            &json!({"_embedded": {"events": page_of(&events, page * size, size)},
            "page": {"size": size, "totalElements": events.len(), "totalPages": events.len().div_ceil(size), "number": page},
            "_links": {"self": {"href": format!("/discovery/v2/events.json?apikey={key}&page={page}")}}}),
        )
    })
}

/// Opendatasoft Explore v2.1: the 1,471 Vélib' stations, `limit` and `offset`, `total_count`.
pub(crate) fn velib_offset() -> Handler {
    let rows = fixture_json(
        "opendatasoft/v2.1-export-list_velib-disponibilite_1471_2024-05-28_anthonybellon_prettier.json",
    );
    let rows = rows.as_array().unwrap().clone();
    Arc::new(move |hit: &Hit| {
        let limit: usize = hit.query["limit"].parse().unwrap();
        let offset: usize = hit.query["offset"].parse().unwrap();
        json(
            200,
            &json!({"total_count": rows.len(), "results": page_of(&rows, offset, limit)}),
        )
    })
}

/// The 1,937 Belib' points, 500 a page, the next page's `cursor` in `cursors.next`.
pub(crate) fn belib_cursor() -> Handler {
    let rows = fixture_json(
        "opendatasoft/v2.1-exports-json_belib-STATIC-points-de-recharge_1937_2024-10_Thevinunt.json",
    );
    let rows = rows.as_array().unwrap().clone();
    Arc::new(move |hit: &Hit| {
        let start: usize = hit
            .query
            .get("cursor")
            .map(|c| c.parse().unwrap())
            .unwrap_or(0);
        let next = start + 500;
        let mut body = json!({"results": page_of(&rows, start, 500)});
        if next < rows.len() {
            body["cursors"] = json!({"next": next.to_string()});
        }
        json(200, &body)
    })
}

/// football-data.org v4: one team's 46 matches, 10 a page, the next page's URL in `next`;
/// with `token`, refused without it in `X-Auth-Token`.
pub(crate) fn football_matches(token: Option<&'static str>) -> Handler {
    let fd = fixture_json("football-data/teams_65_matches_PL-CL_2023-24_CRLLNKhoa.json");
    let matches = fd["matches"].as_array().unwrap().clone();
    Arc::new(move |hit: &Hit| {
        if token.is_some() && hit.headers.get("x-auth-token").map(String::as_str) != token {
            return json(
                403,
                &json!({"message": "The resource you are looking for is restricted."}),
            );
        }
        let page: usize = hit
            .query
            .get("page")
            .map(|p| p.parse().unwrap())
            .unwrap_or(1);
        let mut body = json!({"matches": page_of(&matches, (page - 1) * 10, 10)});
        if page * 10 < matches.len() {
            body["next"] = json!(format!("/v4/teams/65/matches?page={}", page + 1));
        }
        json(200, &body)
    })
}

/// GBFS station_information: 1,495 stations, 400 a page, the next page in a `Link` header.
pub(crate) fn gbfs_information() -> Handler {
    let info = fixture_json("velib-gbfs/station_information_2025-10-18_dariusbengo.json");
    let stations = info["data"]["stations"].as_array().unwrap().clone();
    Arc::new(move |hit: &Hit| {
        let page: usize = hit.query.get("p").map(|p| p.parse().unwrap()).unwrap_or(0);
        let body = json!({"data": {"stations": page_of(&stations, page * 400, 400)}});
        if (page + 1) * 400 < stations.len() {
            let link = format!(
                "</gbfs/station_information.json?p={}>; rel=\"next\"",
                page + 1
            );
            raw(
                200,
                &[("link", &link), ("content-type", "application/json")],
                body.to_string(),
            )
        } else {
            json(200, &body)
        }
    })
}
