//! Embeds the front-end libraries (ECharts, Swagger UI) from `web/node_modules`, installing
//! them with `npm ci` (from `web/package-lock.json`) when they are missing. Nothing is fetched
//! at run time: the binary serves everything itself.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: &[(&str, &str)] = &[
    ("echarts/dist/echarts.min.js", "echarts.min.js"),
    (
        "swagger-ui-dist/swagger-ui-bundle.js",
        "swagger-ui-bundle.js",
    ),
    ("swagger-ui-dist/swagger-ui.css", "swagger-ui.css"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    let modules = web.join("node_modules");
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package-lock.json").display()
    );
    for (from, _) in FILES {
        println!("cargo:rerun-if-changed={}", modules.join(from).display());
    }
    if FILES.iter().any(|(from, _)| !modules.join(from).is_file()) {
        install(&web);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    for (from, to) in FILES {
        let src = modules.join(from);
        if let Err(e) = std::fs::copy(&src, out.join(to)) {
            panic!(
                "cannot embed {}: {e}. Run `npm ci` in {} (Node.js and npm are needed to build the dashboard).",
                src.display(),
                web.display()
            );
        }
    }
}

fn install(web: &Path) {
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(web)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`npm ci` in {} failed ({s})", web.display()),
        Err(e) => panic!(
            "the dashboard's libraries are not installed and npm cannot run ({e}): install Node.js and npm, then run `npm ci` in {}",
            web.display()
        ),
    }
}
