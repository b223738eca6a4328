//! The front-end, embedded: our shell, script and styles (`web/src`), ECharts and Swagger UI
//! (from npm, copied by `build.rs`).

/// The single-page shell.
pub const INDEX_HTML: &str = include_str!("../../../web/src/index.html");
/// The API documentation page.
pub const DOCS_HTML: &str = include_str!("../../../web/src/docs.html");

const APP_JS: &str = include_str!("../../../web/src/app.js");
const APP_CSS: &str = include_str!("../../../web/src/app.css");
const DOCS_JS: &str = include_str!("../../../web/src/docs.js");
const ECHARTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echarts.min.js"));
const SWAGGER_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js"));
const SWAGGER_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css"));

/// An asset's bytes and content type.
pub fn get(name: &str) -> Option<(&'static [u8], &'static str)> {
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    Some(match name {
        "app.js" => (APP_JS.as_bytes(), JS),
        "app.css" => (APP_CSS.as_bytes(), CSS),
        "docs.js" => (DOCS_JS.as_bytes(), JS),
        "echarts.min.js" => (ECHARTS, JS),
        "swagger-ui-bundle.js" => (SWAGGER_JS, JS),
        "swagger-ui.css" => (SWAGGER_CSS, CSS),
        _ => return None,
    })
}
