// Prepares a copy of examples/footfall with the seed's six months of raw exports loaded and its
// models run (which evaluates its alert), three users, and `affluent serve` on a free port; and a
// copy of examples/belib-weather with a simulated week (`affluent demo --no-run --until`) and its
// own `affluent serve`; and a copy of examples/velib with a simulated hour of polls (`affluent
// demo --no-run --hours 1 --until`) and its `affluent serve`; and a copy of examples/music-radar
// with 60 simulated days and its `affluent serve`; and a copy of examples/culture replaying its
// cassettes (`affluent demo --no-run --until`) and its `affluent serve`; and a copy of
// examples/footfall served with its visitor-counter API on a port nothing listens to yet (the
// pipeline page's test starts the simulator there). The base URLs and the project
// directories reach the tests through the environment.
const { execFileSync, spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const repo = path.resolve(__dirname, "../..");

function binary() {
  if (process.env.AFFLUENT_BIN) return process.env.AFFLUENT_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
  return path.join(target, "debug", "affluent");
}

module.exports = async function globalSetup() {
  const bin = binary();
  if (!fs.existsSync(bin)) throw new Error(`no affluent binary at ${bin}: run cargo build -p affluent-cli first (or set AFFLUENT_BIN)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "affluent-ui-"));
  fs.cpSync(path.join(repo, "examples/footfall"), dir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}.affluent`),
  });
  const run = (args, input) =>
    execFileSync(bin, ["--project", dir, ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  for (const source of ["agencies", "holidays", "footfall_raw"]) run(["ingest", source]);
  run(["transform"]);
  run(["user", "add", "ada", "--role", "admin"], "correct horse battery\n");
  run(["user", "add", "vic", "--role", "viewer"], "viewer password\n");
  run(["user", "add", "mallory", "--role", "viewer"], "mallory password\n");

  const footfall = await serve(bin, dir);
  const url = footfall.url;

  // examples/belib-weather: a fixed simulated week, so the figures are the same every run.
  const belibDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "affluent-ui-belib-")), "belib-weather");
  fs.cpSync(path.join(repo, "examples/belib-weather"), belibDir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}.affluent`),
  });
  const runBelib = (args, input) =>
    execFileSync(bin, ["--project", belibDir, ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  runBelib(["demo", "--no-run", "--weeks", "1", "--until", "2025-04-01"]);
  runBelib(["user", "add", "ada", "--role", "admin"], "correct horse battery\n");
  const belib = await serve(bin, belibDir);

  // examples/velib: an hour of polls a minute, fixed, so the figures are the same every run.
  const velibDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "affluent-ui-velib-")), "velib");
  fs.cpSync(path.join(repo, "examples/velib"), velibDir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}.affluent`),
  });
  const runVelib = (args, input) =>
    execFileSync(bin, ["--project", velibDir, ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  runVelib(["demo", "--no-run", "--hours", "1", "--until", "2025-03-03T09:00:00Z"]);
  runVelib(["user", "add", "ada", "--role", "admin"], "correct horse battery\n");
  const velib = await serve(bin, velibDir);

  // examples/music-radar: 60 simulated days, fixed.
  const musicDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "affluent-ui-music-")), "music-radar");
  fs.cpSync(path.join(repo, "examples/music-radar"), musicDir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}.affluent`),
  });
  const runMusic = (args, input) =>
    execFileSync(bin, ["--project", musicDir, ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  runMusic(["demo", "--no-run", "--days", "60", "--until", "2026-11-30"]);
  runMusic(["user", "add", "ada", "--role", "admin"], "correct horse battery\n");
  const music = await serve(bin, musicDir);
  // examples/culture: its cassettes replayed, fixed.
  const cultureDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "affluent-ui-culture-")), "culture");
  fs.cpSync(path.join(repo, "examples/culture"), cultureDir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}.affluent`),
  });
  const runCulture = (args, input) =>
    execFileSync(bin, ["--project", cultureDir, ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  runCulture(["demo", "--no-run", "--until", "2026-12-04T12:00"]);
  runCulture(["user", "add", "ada", "--role", "admin"], "correct horse battery\n");
  const culture = await serve(bin, cultureDir);
  // The pipeline page: a copy of examples/footfall whose visitor-counter API is a simulator on
  // a port chosen here, which the test starts and stops (nothing listens there until then).
  const opsDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "affluent-ui-ops-")), "footfall");
  fs.cpSync(path.join(repo, "examples/footfall"), opsDir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}.affluent`),
  });
  const opsPort = await freePort();
  const opsEnv = { FOOTFALL_API_URL: `http://127.0.0.1:${opsPort}` };
  // The agencies and holidays the models join; the API's intervals are never run.
  for (const source of ["agencies", "holidays"]) execFileSync(bin, ["--project", opsDir, "ingest", source], { stdio: ["ignore", "pipe", "pipe"] });
  execFileSync(bin, ["--project", opsDir, "user", "add", "ada", "--role", "admin"], { input: "correct horse battery\n", stdio: ["pipe", "pipe", "pipe"] });
  execFileSync(bin, ["--project", opsDir, "user", "add", "vic", "--role", "viewer"], { input: "viewer password\n", stdio: ["pipe", "pipe", "pipe"] });
  const ops = await serve(bin, opsDir, opsEnv);
  process.env.AFFLUENT_OPS_URL = ops.url;
  process.env.AFFLUENT_OPS_DIR = opsDir;
  process.env.AFFLUENT_OPS_API_PORT = String(opsPort);
  process.env.AFFLUENT_CULTURE_URL = culture.url;
  process.env.AFFLUENT_CULTURE_DIR = cultureDir;
  process.env.AFFLUENT_MUSIC_URL = music.url;
  process.env.AFFLUENT_MUSIC_DIR = musicDir;
  process.env.AFFLUENT_VELIB_URL = velib.url;
  process.env.AFFLUENT_VELIB_DIR = velibDir;
  process.env.AFFLUENT_BELIB_URL = belib.url;
  process.env.AFFLUENT_BELIB_DIR = belibDir;
  process.env.AFFLUENT_URL = url;
  process.env.AFFLUENT_PROJECT_DIR = dir;
  process.env.AFFLUENT_BIN = bin;
  return async () => {
    footfall.server.kill("SIGTERM");
    belib.server.kill("SIGTERM");
    velib.server.kill("SIGTERM");
    music.server.kill("SIGTERM");
    culture.server.kill("SIGTERM");
    ops.server.kill("SIGTERM");
    fs.rmSync(path.dirname(opsDir), { recursive: true, force: true });
    fs.rmSync(path.dirname(cultureDir), { recursive: true, force: true });
    fs.rmSync(path.dirname(musicDir), { recursive: true, force: true });
    fs.rmSync(path.dirname(velibDir), { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(path.dirname(belibDir), { recursive: true, force: true });
  };
};

// `affluent serve` on a free port: its URL (first line of stdout) and the process.
async function serve(bin, dir, env) {
  const server = spawn(bin, ["--project", dir, "serve", "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...(env || {}) },
  });
  let stderr = "";
  server.stderr.on("data", (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const line = out.split("\n")[0];
      if (out.includes("\n")) resolve(line.trim());
    });
    server.on("exit", (code) => reject(new Error(`affluent serve exited (${code}): ${stderr}`)));
    setTimeout(() => reject(new Error(`affluent serve did not start: ${stderr}`)), 30_000);
  });
  return { url, server };
}

// A TCP port free now on 127.0.0.1.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = require("node:net").createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
