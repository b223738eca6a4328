"""Builds the culture example's cassettes from the real captures in ../shared/fixtures.

Each cassette answers the requests examples/culture/affluent.toml makes, with real records from
the providers; only the envelopes that depend on the request are rewritten (page numbers and
totals, football-data's filters and result set), as said in each cassette's `note`. Keys are
not in the captures; nothing here needs one.

    python3 examples/culture/cassettes/build.py [../shared/fixtures]

`affluent record events` (with TICKETMASTER_API_KEY set) replaces a cassette with live answers.
"""

import json
import os
import sys
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures")
RECORDED_AT = "2026-12-04T00:00:00Z"
# The interval the URLs are written for: a replay matches any interval (these parameters follow
# it), so the value only documents when the cassette pretends to be from.
TICK_END = "2026-12-04T00:00:00Z"


def load(path):
    with open(os.path.join(FIXTURES, path), encoding="utf-8") as f:
        return json.load(f)


def interaction(url, params, body):
    return {
        "method": "GET",
        "url": f"{url}?{urlencode(params)}",
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": body,
    }


def write(name, source, note, interactions):
    doc = {
        "affluent_cassette": 1,
        "source": source,
        "recorded_at": RECORDED_AT,
        "note": note,
        "interactions": interactions,
    }
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    records = sum(
        len(i["body"]["_embedded"]["events"]) if source == "events"
        else len(i["body"]["matches"]) if source == "matches"
        else len(i["body"][1])
        for i in interactions
    )
    print(f"{name}: {len(interactions)} answers, {records} records")


def events():
    """Ticketmaster Discovery v2, sorted by date descending from 8 hours before the tick, 20 a
    page: the US capture's 20 events on page 0, the Czech and 2017 captures' events on page 1."""
    pages = [
        load("ticketmaster/events_US_page0_2020_zachbrown12.json")["_embedded"]["events"],
        load("ticketmaster/events_single_CZ_2025-06-28_ABeGood.json")["_embedded"]["events"]
        + load("ticketmaster/events_single_2017_apguan.json")["_embedded"]["events"],
    ]
    total = sum(len(p) for p in pages)
    url = "https://app.ticketmaster.com/discovery/v2/events.json"
    out = []
    for number, items in enumerate(pages):
        params = {"sort": "date,desc", "size": 20, "startDateTime": "2026-12-03T16:00:00Z", "page": number}
        body = {
            "_embedded": {"events": items},
            "page": {"size": 20, "totalElements": total, "totalPages": len(pages), "number": number},
        }
        out.append(interaction(url, params, body))
    write(
        "events.json",
        "events",
        "Built from shared/fixtures/ticketmaster (events_US_page0_2020, events_single_CZ_2025-06-28, "
        "events_single_2017): events verbatim, two pages of 20 with `page` rewritten; `_links` left out.",
        out,
    )


def matches():
    """football-data.org v4 /competitions/{PL,CL}/matches over the 30 days before the tick: the
    matches of the Manchester City 2023-24 capture, split by competition."""
    capture = load("football-data/teams_65_matches_PL-CL_2023-24_CRLLNKhoa.json")
    out = []
    for code in ["PL", "CL"]:
        items = [m for m in capture["matches"] if m["competition"]["code"] == code]
        played = [m for m in items if m["status"] == "FINISHED"]
        body = {
            "filters": {"season": "2023", "dateFrom": "2026-11-04", "dateTo": "2026-12-04", "permission": "TIER_ONE"},
            "resultSet": {
                "count": len(items),
                "first": min(m["utcDate"][:10] for m in items),
                "last": max(m["utcDate"][:10] for m in items),
                "played": len(played),
            },
            "competition": items[0]["competition"],
            "matches": items,
        }
        url = f"https://api.football-data.org/v4/competitions/{code}/matches"
        out.append(interaction(url, {"dateFrom": "2026-11-04", "dateTo": "2026-12-04"}, body))
    write(
        "matches.json",
        "matches",
        "Built from shared/fixtures/football-data/teams_65_matches_PL-CL_2023-24 (the matches of one "
        "team's season, 2023-24): matches verbatim, split by competition, `filters` and `resultSet` rewritten.",
        out,
    )


def economy():
    """World Bank v2 /country/all/indicator/{GDP,population} from 2000, 1,000 a page: the
    records of the captured countries (GDP: Brazil, China, Georgia, Albania, Mongolia;
    population: the United States, India), years 2000 on."""
    captures = {
        "NY.GDP.MKTP.CD": [
            "worldbank/v2_country_bra_NY.GDP.MKTP.CD_2025-09-13_wbstats.json",
            "worldbank/v2_country_chn_NY.GDP.MKTP.CD_2021-09_nataliephillips.json",
            "worldbank/v2_country_geo-alb-mng_NY.GDP.MKTP.CD_2005-2007_2025-09-13_wbstats.json",
        ],
        "SP.POP.TOTL": [
            "worldbank/v2_country_usa_SP.POP.TOTL_2021-09_nataliephillips.json",
            "worldbank/v2_country_ind_SP.POP.TOTL_2023-06_sparkde9.json",
        ],
    }
    out = []
    for indicator, files in captures.items():
        records = []
        for path in files:
            records += [r for r in load(path)[1] if int(r["date"]) >= 2000]
        meta = {"page": 1, "pages": 1, "per_page": 1000, "total": len(records), "sourceid": "2", "lastupdated": "2025-07-01"}
        url = f"https://api.worldbank.org/v2/country/all/indicator/{indicator}"
        params = {"format": "json", "per_page": 1000, "date": "2000:2026", "page": 1}
        out.append(interaction(url, params, [meta, records]))
    write(
        "economy.json",
        "economy",
        "Built from shared/fixtures/worldbank (the v2 captures of Brazil, China, Georgia/Albania/Mongolia "
        "GDP and of United States and India population): records of 2000 on verbatim, gathered per "
        "indicator as /country/all answers, the paging header rewritten. Other countries are not in it.",
        out,
    )


if __name__ == "__main__":
    events()
    matches()
    economy()
