//! Seed 002's music APIs: the Spotify Web API (`POST /api/token` with client credentials,
//! `GET /v1/artists?ids=` up to 50, `GET /v1/artists/{id}`, shaped as the capture in
//! ../shared/fixtures/spotify) and Deezer's (`GET /artist/{id}`: `nb_fan`, `nb_album`,
//! `picture`, `link`), over one population of artists whose audience moves day by day.
//!
//! Every number is a pure function of (seed, artist, day), so any past day can be served (a
//! backfill with the clock set to each day builds the history the live API would have given):
//! - a base audience, log-uniform between 500 and 150,000 Spotify followers;
//! - a career curve: a logistic rise (×1.5 to ×6 over a few weeks to months) centred on a day of
//!   its own between 2025 and 2027, flat far from it;
//! - buzz: sudden jumps (+8 % to +45 %, breakouts) and drops (−6 % to −20 %) on days drawn per
//!   artist and kind, each fading by 3 % a day;
//! - a little daily noise (0.2 %).
//!
//! Popularity (0–100) follows the audience on a log scale and its 7-day momentum; Deezer fans
//! are the audience times the artist's Deezer ratio. Not every artist is on both services.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::draw::{hash, normal, uniform};

/// Artists simulated by default.
pub const ARTISTS: usize = 520;

/// How many ids `GET /v1/artists` takes at once (Spotify's limit).
pub const MAX_IDS: usize = 50;

const GENRES: &[&str] = &[
    "rap français",
    "pop urbaine",
    "afro r&b",
    "indie pop",
    "french house",
    "chanson",
    "drill",
    "lo-fi",
    "jazz fusion",
    "electro",
    "r&b français",
    "alternative rock",
    "amapiano",
    "reggaeton",
    "synthwave",
    "folk",
    "k-pop",
    "neo soul",
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "zen", "vi", "so", "tal", "nor", "el", "ya", "bri", "qua", "do", "fe",
    "lu", "ori", "sa", "ty", "xa", "mo", "ne", "ri", "sha", "ko", "la", "vé", "na", "ju", "ste",
];

const PREFIXES: &[&str] = &[
    "", "", "", "", "Lil ", "DJ ", "MC ", "The ", "Yung ", "Miss ",
];

/// What an artist's buzz events tend to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Few events: the career curve alone.
    Steady,
    /// Frequent breakouts.
    Breakout,
    /// Frequent drops.
    Volatile,
}

/// One simulated artist.
#[derive(Debug, Clone)]
pub struct Artist {
    /// Position in the population.
    pub index: usize,
    /// Stage name (unique).
    pub name: String,
    /// Spotify id (22 base-62 characters), if on Spotify.
    pub spotify_id: Option<String>,
    /// Deezer id, if on Deezer.
    pub deezer_id: Option<u64>,
    /// Genres.
    pub genres: Vec<&'static str>,
    /// What its events tend to be.
    pub kind: Kind,
    base: f64,
    rise: f64,
    centre: f64,
    steepness: f64,
    offset: f64,
    deezer_ratio: f64,
    albums: u64,
}

/// One artist's numbers on one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Day {
    /// Spotify followers.
    pub followers: u64,
    /// Spotify popularity, 0–100.
    pub popularity: u64,
    /// Deezer fans.
    pub fans: u64,
}

/// The population of artists of a seed.
#[derive(Debug, Clone)]
pub struct Music {
    seed: u64,
    artists: Vec<Artist>,
}

fn base62(h: u64, seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..len as u64)
        .map(|k| ALPHABET[(hash(&[seed, 0x1d, h, k]) % 62) as usize] as char)
        .collect()
}

/// Days since 1970-01-01 (UTC) of an instant.
pub fn day_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(86_400)
}

impl Music {
    /// The [`ARTISTS`] artists of a seed.
    pub fn new(seed: u64) -> Self {
        Self::with_artists(seed, ARTISTS)
    }

    /// `n` artists of a seed.
    pub fn with_artists(seed: u64, n: usize) -> Self {
        let mut names = std::collections::HashSet::new();
        let mut artists = Vec::with_capacity(n);
        for index in 0..n {
            let i = index as u64;
            let mut salt = 0u64;
            let name = loop {
                let h = hash(&[seed, 0xa1, i, salt]);
                let words = 1 + usize::from(h.is_multiple_of(3));
                let mut name = PREFIXES[(h >> 8) as usize % PREFIXES.len()].to_string();
                for w in 0..words {
                    let hw = hash(&[seed, 0xa2, i, salt, w as u64]);
                    let count = 2 + (hw % 2) as usize;
                    let mut word = String::new();
                    for s in 0..count {
                        word.push_str(
                            SYLLABLES[(hash(&[hw, s as u64]) as usize) % SYLLABLES.len()],
                        );
                    }
                    let mut chars = word.chars();
                    if let Some(first) = chars.next() {
                        if w > 0 {
                            name.push(' ');
                        }
                        name.extend(first.to_uppercase());
                        name.push_str(chars.as_str());
                    }
                }
                if names.insert(name.clone()) {
                    break name;
                }
                salt += 1;
            };
            let presence = uniform(hash(&[seed, 0xa3, i]));
            // 80 % on both services, 10 % only on Spotify, 10 % only on Deezer.
            let on_spotify = presence < 0.9;
            let on_deezer = presence >= 0.1;
            let spotify_id = on_spotify.then(|| base62(hash(&[seed, 0xa4, i]), seed, 22));
            let deezer_id = on_deezer.then(|| 100_000 + hash(&[seed, 0xa5, i]) % 90_000_000);
            let hg = hash(&[seed, 0xa6, i]);
            let mut genres = vec![GENRES[hg as usize % GENRES.len()]];
            if !hg.is_multiple_of(3) {
                let second = GENRES[(hg >> 16) as usize % GENRES.len()];
                if second != genres[0] {
                    genres.push(second);
                }
            }
            let k = uniform(hash(&[seed, 0xa7, i]));
            let kind = if k < 0.6 {
                Kind::Steady
            } else if k < 0.8 {
                Kind::Breakout
            } else {
                Kind::Volatile
            };
            let base = 500.0 * (150_000.0f64 / 500.0).powf(uniform(hash(&[seed, 0xa8, i])));
            let rise = 1.5 + 4.5 * uniform(hash(&[seed, 0xa9, i]));
            // Centred between 2025-01-01 (day 20089) and 2027-01-01 (day 20819).
            let centre = 20_089.0 + 730.0 * uniform(hash(&[seed, 0xaa, i]));
            let steepness = 0.02 + 0.1 * uniform(hash(&[seed, 0xab, i]));
            let offset = -6.0 + 12.0 * uniform(hash(&[seed, 0xac, i]));
            let deezer_ratio = 0.2 + 1.3 * uniform(hash(&[seed, 0xad, i]));
            let albums = 1 + hash(&[seed, 0xae, i]) % 12;
            artists.push(Artist {
                index,
                name,
                spotify_id,
                deezer_id,
                genres,
                kind,
                base,
                rise,
                centre,
                steepness,
                offset,
                deezer_ratio,
                albums,
            });
        }
        Self { seed, artists }
    }

    /// The artists.
    pub fn artists(&self) -> &[Artist] {
        &self.artists
    }

    /// The artist with this Spotify id.
    pub fn by_spotify(&self, id: &str) -> Option<&Artist> {
        self.artists
            .iter()
            .find(|a| a.spotify_id.as_deref() == Some(id))
    }

    /// The artist with this Deezer id.
    pub fn by_deezer(&self, id: u64) -> Option<&Artist> {
        self.artists.iter().find(|a| a.deezer_id == Some(id))
    }

    /// The buzz of day `d`: every event of the last 150 days, each fading by 3 % a day.
    fn buzz(&self, a: &Artist, d: i64) -> f64 {
        let (p_up, p_down) = match a.kind {
            Kind::Steady => (1.0 / 200.0, 1.0 / 250.0),
            Kind::Breakout => (1.0 / 25.0, 1.0 / 120.0),
            Kind::Volatile => (1.0 / 90.0, 1.0 / 20.0),
        };
        let i = a.index as u64;
        let mut buzz = 0.0;
        for e in (d - 150)..=d {
            let h = uniform(hash(&[self.seed, 0xb1, i, e as u64]));
            let size = uniform(hash(&[self.seed, 0xb2, i, e as u64]));
            let jump = if h < p_up {
                (1.08 + 0.37 * size).ln()
            } else if h > 1.0 - p_down {
                (0.94 - 0.14 * size).ln()
            } else {
                continue;
            };
            buzz += jump * 0.97f64.powi((d - e) as i32);
        }
        buzz
    }

    /// The audience (in followers, before noise) of day `d`.
    fn audience(&self, a: &Artist, d: i64) -> f64 {
        let x = a.steepness * (d as f64 - a.centre);
        let curve = 1.0 + (a.rise - 1.0) / (1.0 + (-x).exp());
        a.base * curve * self.buzz(a, d).exp()
    }

    /// An artist's numbers on day `d` (days since 1970-01-01, UTC).
    pub fn day(&self, a: &Artist, d: i64) -> Day {
        let i = a.index as u64;
        let audience = self.audience(a, d);
        let noise = 1.0 + 0.002 * normal(hash(&[self.seed, 0xc1, i, d as u64]));
        let followers = (audience * noise).round().max(0.0) as u64;
        let momentum = (audience / self.audience(a, d - 7)).ln();
        let popularity =
            (14.0 * audience.max(1.0).log10() - 25.0 + 12.0 * (4.0 * momentum).tanh() + a.offset)
                .round()
                .clamp(0.0, 100.0) as u64;
        let fan_noise = 1.0 + 0.003 * normal(hash(&[self.seed, 0xc2, i, d as u64]));
        let fans = (audience * a.deezer_ratio * fan_noise).round().max(0.0) as u64;
        Day {
            followers,
            popularity,
            fans,
        }
    }

    /// Spotify's artist object at time `t`.
    pub fn spotify_artist(&self, a: &Artist, t: Timestamp) -> Value {
        let id = a.spotify_id.as_deref().unwrap_or_default();
        let day = self.day(a, day_of(t));
        let image = |size: u32, code: &str| {
            json!({
                "url": format!("https://i.scdn.co/image/ab6761610000{code}{}", &hex_of(id)[..24]),
                "height": size,
                "width": size,
            })
        };
        json!({
            "external_urls": { "spotify": format!("https://open.spotify.com/artist/{id}") },
            "followers": { "href": null, "total": day.followers },
            "genres": a.genres,
            "href": format!("https://api.spotify.com/v1/artists/{id}"),
            "id": id,
            "images": [image(640, "e5eb"), image(320, "5174"), image(160, "f178")],
            "name": a.name,
            "popularity": day.popularity,
            "type": "artist",
            "uri": format!("spotify:artist:{id}"),
        })
    }

    /// `GET /v1/artists?ids=`: the artists in order, `null` for an unknown id, as Spotify
    /// answers; more than [`MAX_IDS`] ids or none is a 400.
    pub fn spotify_artists(&self, ids: &str, t: Timestamp) -> Result<Value, (u16, Value)> {
        let ids: Vec<&str> = ids.split(',').filter(|s| !s.is_empty()).collect();
        if ids.is_empty() {
            return Err(spotify_error(400, "No ids provided"));
        }
        if ids.len() > MAX_IDS {
            return Err(spotify_error(400, "Too many ids requested"));
        }
        let artists: Vec<Value> = ids
            .iter()
            .map(|id| match self.by_spotify(id) {
                Some(a) => self.spotify_artist(a, t),
                None => Value::Null,
            })
            .collect();
        Ok(json!({ "artists": artists }))
    }

    /// Deezer's `GET /artist/{id}` at time `t`; an unknown id is Deezer's error object (with
    /// status 200, as Deezer answers).
    pub fn deezer_artist(&self, id: &str, t: Timestamp) -> Value {
        let Some(a) = id.parse::<u64>().ok().and_then(|n| self.by_deezer(n)) else {
            return json!({"error": {"type": "DataException", "message": "no data", "code": 800}});
        };
        let deezer_id = a.deezer_id.unwrap_or_default();
        let day = self.day(a, day_of(t));
        let picture = format!("https://api.deezer.com/artist/{deezer_id}/image");
        let sized = |size: &str| {
            format!(
                "https://e-cdns-images.dzcdn.net/images/artist/{}/{size}-000000-80-0-0.jpg",
                &hex_of(&deezer_id.to_string())[..32]
            )
        };
        json!({
            "id": deezer_id,
            "name": a.name,
            "link": format!("https://www.deezer.com/artist/{deezer_id}"),
            "share": format!("https://www.deezer.com/artist/{deezer_id}?utm_source=deezer"),
            "picture": picture,
            "picture_small": sized("56x56"),
            "picture_medium": sized("250x250"),
            "picture_big": sized("500x500"),
            "picture_xl": sized("1000x1000"),
            "nb_album": a.albums,
            "nb_fan": day.fans,
            "radio": true,
            "tracklist": format!("https://api.deezer.com/artist/{deezer_id}/top?limit=50"),
            "type": "artist",
        })
    }

    /// The watch list as CSV (`name,spotify_id,deezer_id`; an empty cell where the artist is
    /// not on that service): what the example's `watchlist.csv` holds.
    pub fn watchlist_csv(&self) -> String {
        let mut out = String::from("name,spotify_id,deezer_id\n");
        for a in &self.artists {
            let name = if a.name.contains(',') || a.name.contains('"') {
                format!("\"{}\"", a.name.replace('"', "\"\""))
            } else {
                a.name.clone()
            };
            out.push_str(&format!(
                "{name},{},{}\n",
                a.spotify_id.as_deref().unwrap_or(""),
                a.deezer_id.map(|d| d.to_string()).unwrap_or_default()
            ));
        }
        out
    }
}

/// Spotify's error body.
pub fn spotify_error(status: u16, message: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"status": status, "message": message}}),
    )
}

/// 48 hex digits drawn from a text: the stable part of image URLs.
fn hex_of(text: &str) -> String {
    let key = crate::draw::name_key(text);
    (0..3)
        .map(|k| format!("{:016x}", hash(&[key, k])))
        .collect()
}

/// The music APIs' server-side state: the artists, the tokens issued, and the requests of the
/// last seconds (rate limits).
#[derive(Debug)]
pub struct MusicApi {
    /// The artists.
    pub music: Music,
    tokens: std::sync::Mutex<std::collections::HashSet<String>>,
    issued: std::sync::atomic::AtomicU64,
    spotify_recent: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
    deezer_recent: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
}

/// Spotify's rolling limit in the simulator: requests per second, beyond which it answers 429
/// with `Retry-After`.
pub const SPOTIFY_PER_SECOND: usize = 20;
/// Deezer's quota: 50 requests per 5 seconds, beyond which it answers its error code 4.
pub const DEEZER_PER_5S: usize = 50;

/// Counts a request in a rolling window; false when the window already holds `limit`.
fn admit(
    recent: &std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
    window: std::time::Duration,
    limit: usize,
) -> bool {
    let now = std::time::Instant::now();
    let mut q = recent.lock().unwrap_or_else(|e| e.into_inner());
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
    if q.len() >= limit {
        return false;
    }
    q.push_back(now);
    true
}

impl MusicApi {
    /// The APIs over a population.
    pub fn new(music: Music) -> Self {
        Self {
            music,
            tokens: Default::default(),
            issued: Default::default(),
            spotify_recent: Default::default(),
            deezer_recent: Default::default(),
        }
    }

    /// `POST /api/token`: client credentials in a Basic header or as form fields, and
    /// `grant_type=client_credentials`.
    pub fn token(&self, authorization: Option<&str>, form: &str) -> Result<Value, (u16, Value)> {
        let fields: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(form.as_bytes())
                .into_owned()
                .collect();
        if fields.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Err((
                400,
                json!({"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}),
            ));
        }
        let basic = authorization
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(i, s)| (i.to_string(), s.to_string()))
            });
        let (id, secret) = match basic {
            Some(pair) => pair,
            None => (
                fields.get("client_id").cloned().unwrap_or_default(),
                fields.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        if id.is_empty() || secret.is_empty() {
            return Err((
                400,
                json!({"error": "invalid_client", "error_description": "Invalid client"}),
            ));
        }
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("BQ{}", base62(hash(&[self.music.seed, 0xd1, n]), n, 40));
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone());
        Ok(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
    }

    /// Checks a Spotify request's bearer token and rate limit (when `limits`).
    pub fn spotify_gate(
        &self,
        authorization: Option<&str>,
        limits: bool,
    ) -> Result<(), (u16, Value)> {
        let token = authorization.and_then(|h| h.strip_prefix("Bearer "));
        let known = token.is_some_and(|t| {
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(t.trim())
        });
        if token.is_none() {
            return Err(spotify_error(401, "No token provided"));
        }
        if !known {
            return Err(spotify_error(401, "Invalid access token"));
        }
        if limits
            && !admit(
                &self.spotify_recent,
                std::time::Duration::from_secs(1),
                SPOTIFY_PER_SECOND,
            )
        {
            return Err(spotify_error(429, "API rate limit exceeded"));
        }
        Ok(())
    }

    /// Deezer's quota (when `limits`): its error object with code 4 beyond it.
    pub fn deezer_gate(&self, limits: bool) -> Result<(), Value> {
        if limits
            && !admit(
                &self.deezer_recent,
                std::time::Duration::from_secs(5),
                DEEZER_PER_5S,
            )
        {
            return Err(
                json!({"error": {"type": "Exception", "message": "Quota limit exceeded", "code": 4}}),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artists_are_unique_deterministic_and_mostly_emerging() {
        let m = Music::new(2);
        assert_eq!(m.artists().len(), ARTISTS);
        let names: std::collections::HashSet<&str> =
            m.artists().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names.len(), ARTISTS);
        let again = Music::new(2);
        let d = day_of("2026-06-01T08:00:00Z".parse().unwrap());
        for (a, b) in m.artists().iter().zip(again.artists()) {
            assert_eq!(a.spotify_id, b.spotify_id);
            assert_eq!(m.day(a, d), again.day(b, d));
            assert!(a.spotify_id.is_some() || a.deezer_id.is_some());
        }
        let emerging = m
            .artists()
            .iter()
            .filter(|a| m.day(a, d).followers < 60_000)
            .count();
        assert!((200..500).contains(&emerging), "{emerging}");
        assert_ne!(Music::new(3).artists()[0].name, m.artists()[0].name);
    }

    #[test]
    fn sixty_days_hold_growth_drops_and_breakouts() {
        let m = Music::new(2);
        let end = day_of("2026-12-01T08:00:00Z".parse().unwrap());
        let (mut up5, mut down5, mut up15) = (0, 0, 0);
        for a in m.artists().iter().filter(|a| a.spotify_id.is_some()) {
            for d in end - 60..end {
                let (p, n) = (
                    m.day(a, d).followers as f64,
                    m.day(a, d + 1).followers as f64,
                );
                let g = n / p - 1.0;
                up5 += usize::from(g >= 0.05);
                down5 += usize::from(g <= -0.05);
                up15 += usize::from(g >= 0.15);
            }
        }
        assert!(up5 > 100 && down5 > 50 && up15 > 20, "{up5} {down5} {up15}");
    }

    #[test]
    fn spotify_refuses_more_than_fifty_ids_and_nulls_unknown_ones() {
        let m = Music::new(2);
        let t: Timestamp = "2026-06-01T08:00:00Z".parse().unwrap();
        let ids: Vec<String> = m
            .artists()
            .iter()
            .filter_map(|a| a.spotify_id.clone())
            .take(51)
            .collect();
        let (status, body) = m.spotify_artists(&ids.join(","), t).unwrap_err();
        assert_eq!(status, 400);
        assert_eq!(body["error"]["message"], "Too many ids requested");
        let ok = m.spotify_artists(&format!("{},nope", ids[0]), t).unwrap();
        assert_eq!(ok["artists"][0]["id"], ids[0].as_str());
        assert!(ok["artists"][1].is_null());
        assert!(ok["artists"][0]["followers"]["total"].as_u64().unwrap() > 0);
        let unknown = m.deezer_artist("1", t);
        assert_eq!(unknown["error"]["code"], 800);
    }
}
