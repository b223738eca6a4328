//! Zones of a GeoJSON file: which polygon a (longitude, latitude) falls in.
//!
//! [`Zones::from_geojson`] reads a FeatureCollection of `Polygon` and `MultiPolygon` features,
//! each named by one of its properties, and indexes their bounding boxes in an R-tree
//! (rstar), so that a lookup tests only the polygons whose box holds the point (about one of
//! Paris's 20 arrondissements, not all of them). The point-in-polygon test is geo's
//! `Intersects`: a point on a border belongs to the zone, and where two zones share the
//! border, to the one first in the file.
//!
//! **Invariant:** reads no file itself (the caller passes the text) and knows nothing of
//! tables or SQL.

use geo::{Coord, Intersects, LineString, MultiPolygon, Point, Polygon};
use rstar::{AABB, RTree, RTreeObject};
use serde_json::Value;

/// Why a GeoJSON text gives no zones.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not a FeatureCollection.
    #[error(
        "expected a GeoJSON FeatureCollection (an object with \"type\": \"FeatureCollection\" and \"features\")"
    )]
    NotACollection,
    /// A feature that cannot be a zone.
    #[error("feature {index}: {reason}")]
    Feature {
        /// Its position in `features` (from 0).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// No feature at all.
    #[error("the collection has no polygon feature")]
    Empty,
}

/// One zone: its name and its shape.
#[derive(Debug, Clone)]
struct Zone {
    name: String,
    shape: MultiPolygon<f64>,
}

/// A zone's bounding box in the R-tree.
#[derive(Debug, Clone)]
struct Boxed {
    zone: usize,
    envelope: AABB<[f64; 2]>,
}

impl RTreeObject for Boxed {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

/// The zones of a GeoJSON file, indexed.
#[derive(Debug)]
pub struct Zones {
    zones: Vec<Zone>,
    index: RTree<Boxed>,
}

impl Zones {
    /// The polygons of a FeatureCollection, each named by its property `name_property` (a
    /// string, or a number written as text). Features of other geometries are errors, as are
    /// a missing name and rings of fewer than four positions.
    pub fn from_geojson(text: &str, name_property: &str) -> Result<Zones, GeoError> {
        let doc: Value = serde_json::from_str(text)?;
        if doc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
            return Err(GeoError::NotACollection);
        }
        let features = doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or(GeoError::NotACollection)?;
        let mut zones = Vec::with_capacity(features.len());
        for (index, feature) in features.iter().enumerate() {
            let fail = |reason: String| GeoError::Feature { index, reason };
            let name = match feature.get("properties").and_then(|p| p.get(name_property)) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => {
                    return Err(fail(format!(
                        "property {name_property:?} is {other}, not a name"
                    )));
                }
                None => {
                    return Err(fail(format!(
                        "no property {name_property:?} to name the zone"
                    )));
                }
            };
            let geometry = feature
                .get("geometry")
                .ok_or_else(|| fail("no geometry".into()))?;
            let coordinates = geometry
                .get("coordinates")
                .ok_or_else(|| fail("a geometry without coordinates".into()))?;
            let shape = match geometry.get("type").and_then(Value::as_str) {
                Some("Polygon") => MultiPolygon(vec![polygon(coordinates).map_err(fail)?]),
                Some("MultiPolygon") => MultiPolygon(
                    coordinates
                        .as_array()
                        .ok_or_else(|| fail("MultiPolygon coordinates are not a list".into()))?
                        .iter()
                        .map(polygon)
                        .collect::<Result<_, _>>()
                        .map_err(fail)?,
                ),
                other => {
                    return Err(fail(format!(
                        "a {} geometry; zones are Polygon or MultiPolygon",
                        other.unwrap_or("typeless")
                    )));
                }
            };
            zones.push(Zone { name, shape });
        }
        if zones.is_empty() {
            return Err(GeoError::Empty);
        }
        let boxes = zones
            .iter()
            .enumerate()
            .flat_map(|(zone, z)| {
                z.shape.0.iter().map(move |p| {
                    let coords = p.exterior().coords();
                    let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
                    for c in coords {
                        lo = [lo[0].min(c.x), lo[1].min(c.y)];
                        hi = [hi[0].max(c.x), hi[1].max(c.y)];
                    }
                    Boxed {
                        zone,
                        envelope: AABB::from_corners(lo, hi),
                    }
                })
            })
            .collect();
        Ok(Zones {
            zones,
            index: RTree::bulk_load(boxes),
        })
    }

    /// How many zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there is none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The names of the zones, in the file's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.zones.iter().map(|z| z.name.as_str())
    }

    /// The zone holding (lon, lat), if any: on a shared border, the first in the file.
    pub fn zone_of(&self, lon: f64, lat: f64) -> Option<&str> {
        if !lon.is_finite() || !lat.is_finite() {
            return None;
        }
        let point = Point::new(lon, lat);
        self.index
            .locate_in_envelope_intersecting(&AABB::from_point([lon, lat]))
            .map(|b| b.zone)
            .filter(|zone| self.zones[*zone].shape.intersects(&point))
            .min()
            .map(|zone| self.zones[zone].name.as_str())
    }

    /// [`Zones::zone_of`] without the index: every polygon tested (for checks).
    pub fn zone_of_by_scan(&self, lon: f64, lat: f64) -> Option<&str> {
        let point = Point::new(lon, lat);
        self.zones
            .iter()
            .find(|z| z.shape.intersects(&point))
            .map(|z| z.name.as_str())
    }
}

/// A GeoJSON polygon: rings of [lon, lat] positions, the first the exterior.
fn polygon(coordinates: &Value) -> Result<Polygon<f64>, String> {
    let rings = coordinates
        .as_array()
        .ok_or("Polygon coordinates are not a list of rings")?;
    let mut rings = rings.iter().map(|ring| {
        let positions = ring.as_array().ok_or("a ring is not a list of positions")?;
        if positions.len() < 4 {
            return Err(format!(
                "a ring of {} positions; a closed ring has at least 4",
                positions.len()
            ));
        }
        positions
            .iter()
            .map(|p| match p.as_array().map(|xy| (xy.first(), xy.get(1))) {
                Some((Some(x), Some(y))) => match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => Ok(Coord { x, y }),
                    _ => Err(format!("position {p} is not two numbers")),
                },
                _ => Err(format!("position {p} is not [lon, lat]")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LineString::new)
    });
    let exterior = rings.next().ok_or("a polygon without rings")??;
    let interiors = rings.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, interiors))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRONDISSEMENTS: &str =
        include_str!("../../../examples/velib/geo/paris_arrondissements.geojson");

    #[test]
    fn stations_fall_in_their_arrondissement_and_the_index_agrees_with_a_scan() {
        let zones = Zones::from_geojson(ARRONDISSEMENTS, "l_ar").expect("zones");
        assert_eq!(zones.len(), 20);
        // Benjamin Godard - Victor Hugo (station 16107), the Louvre, the Bois de Vincennes,
        // Boulogne-Billancourt (outside Paris).
        assert_eq!(zones.zone_of(2.275725, 48.865983), Some("16ème Ardt"));
        assert_eq!(zones.zone_of(2.3376, 48.8606), Some("1er Ardt"));
        assert_eq!(zones.zone_of(2.4330, 48.8330), Some("12ème Ardt"));
        assert_eq!(zones.zone_of(2.2400, 48.8350), None);
        assert_eq!(zones.zone_of(f64::NAN, 48.8), None);
        // A grid over Paris and around it: the R-tree finds what testing every polygon finds.
        let mut inside = 0;
        for i in 0..100 {
            for j in 0..100 {
                let (lon, lat) = (2.20 + 0.003 * f64::from(i), 48.80 + 0.0012 * f64::from(j));
                let found = zones.zone_of(lon, lat);
                assert_eq!(found, zones.zone_of_by_scan(lon, lat), "({lon}, {lat})");
                inside += usize::from(found.is_some());
            }
        }
        // Paris (105 km² with its woods) is about 36 % of this 22 x 13 km grid.
        assert!(
            (3_300..3_900).contains(&inside),
            "{inside} of 10,000 in Paris"
        );
        let by_code = Zones::from_geojson(ARRONDISSEMENTS, "c_ar").expect("zones");
        assert_eq!(by_code.zone_of(2.275725, 48.865983), Some("16"));
    }

    #[test]
    fn bad_files_say_which_feature_and_what_is_wrong() {
        let err = |text: &str| {
            Zones::from_geojson(text, "name")
                .expect_err("refused")
                .to_string()
        };
        assert!(err("{").starts_with("not JSON"));
        assert!(err(r#"{"type": "Feature"}"#).contains("FeatureCollection"));
        assert!(err(r#"{"type": "FeatureCollection", "features": []}"#).contains("no polygon"));
        let point = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "a"}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}"#;
        assert_eq!(
            err(point),
            "feature 0: a Point geometry; zones are Polygon or MultiPolygon"
        );
        let unnamed = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]}}]}"#;
        assert!(err(unnamed).contains("no property \"name\""));
        let open = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "a"}, "geometry": {"type": "Polygon", "coordinates": [[[0,0],[1,0]]]}}]}"#;
        assert!(err(open).contains("at least 4"));
        let multi = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": 7}, "geometry": {"type": "MultiPolygon", "coordinates": [[[[0,0],[1,0],[1,1],[0,0]]], [[[5,5],[6,5],[6,6],[5,5]]]]}}]}"#;
        let zones = Zones::from_geojson(multi, "name").expect("zones");
        assert_eq!(zones.zone_of(5.9, 5.5), Some("7"));
        assert_eq!(zones.zone_of(3.0, 3.0), None);
    }
}
