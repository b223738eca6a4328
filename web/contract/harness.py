"""A real `affluent serve` on a copy of an example, with an admin, for the contract run and the
attacks (Python 3.11 standard library only).

    with Server(example="footfall", config_extra="...") as s:
        s.url, s.dir, s.pid, s.admin_client()
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ADMIN = ("ada", "correct horse battery")


def binary() -> str:
    """The affluent binary: $AFFLUENT, else $CARGO_TARGET_DIR/debug/affluent, built when missing."""
    if os.environ.get("AFFLUENT"):
        return os.environ["AFFLUENT"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    path = os.path.join(target, "debug", "affluent")
    if not os.access(path, os.X_OK):
        print(f"no binary at {path}: cargo build -p affluent-cli", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "build", "--locked", "-p", "affluent-cli"], cwd=REPO, check=True)
    return path


class Client:
    """A session: cookies kept, the CSRF token of the last GET /api/session sent on POST/DELETE."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self.headers = dict(headers or {})

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        """Returns (status, headers as a dict of lowercase names to lists, body bytes)."""
        h = dict(self.headers)
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method not in ("GET", "HEAD") and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=data, headers=h)
            res = conn.getresponse()
            payload = res.read()
            got: dict[str, list[str]] = {}
            for k, v in res.getheaders():
                got.setdefault(k.lower(), []).append(v)
        finally:
            conn.close()
        for cookie in got.get("set-cookie", []):
            pair = cookie.split(";", 1)[0]
            k, _, v = pair.partition("=")
            if "Max-Age=0" in cookie or not v:
                self.cookies.pop(k, None)
            else:
                self.cookies[k] = v
        return res.status, got, payload

    def session(self) -> dict:
        status, _, body = self.request("GET", "/api/session")
        if status != 200:
            raise RuntimeError(f"GET /api/session answered {status}: {body[:200]!r}")
        info = json.loads(body)
        self.csrf = info["csrf"]
        return info

    def login(self, name: str, password: str):
        self.session()
        return self.request("POST", "/api/login", {"name": name, "password": password})


class Server:
    """Copies examples/EXAMPLE to a temp dir (without its data), appends `config_extra` to its
    affluent.toml, loads its CSV sources and models when `load`, adds the admin, and runs
    `affluent serve` on a free loopback port."""

    def __init__(self, example: str = "footfall", config_extra: str = "", load: bool = True,
                 dashboard_extra: str = ""):
        self.example, self.config_extra, self.load = example, config_extra, load
        self.dashboard_extra = dashboard_extra
        self.bin = binary()
        self.proc: subprocess.Popen | None = None
        self.dir = ""
        self.url = ""

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120):
        return subprocess.run([self.bin, "--project", self.dir, *args], input=stdin, text=True,
                              capture_output=True, check=check, timeout=timeout)

    def __enter__(self) -> "Server":
        self.dir = tempfile.mkdtemp(prefix=f"affluent-{self.example}-")
        shutil.copytree(os.path.join(REPO, "examples", self.example), self.dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".affluent"))
        toml = os.path.join(self.dir, "affluent.toml")
        with open(toml, encoding="utf-8") as f:
            text = f.read()
        if self.dashboard_extra:
            text = text.replace("[dashboard]\n", "[dashboard]\n" + self.dashboard_extra + "\n", 1)
        with open(toml, "w", encoding="utf-8") as f:
            f.write(text + ("\n" + self.config_extra + "\n" if self.config_extra else ""))
        if self.load:
            for source in ("agencies", "holidays", "footfall_raw"):
                self.run("ingest", source)
            self.run("transform")
        self.run("user", "add", ADMIN[0], "--role", "admin", stdin=ADMIN[1] + "\n")
        self.stderr = open(os.path.join(self.dir, "serve.log"), "w+", encoding="utf-8")
        self.proc = subprocess.Popen([self.bin, "--project", self.dir, "serve", "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True)
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http"):
            self.proc.wait(timeout=10)
            self.stderr.seek(0)
            raise RuntimeError(f"affluent serve did not start ({line!r}): {self.stderr.read()}")
        self.url = line.rstrip("/")
        for _ in range(100):
            try:
                if Client(self.url).request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def admin_client(self) -> Client:
        c = Client(self.url)
        status, _, body = c.login(*ADMIN)
        if status != 200:
            raise RuntimeError(f"admin login answered {status}: {body[:200]!r}")
        c.session()
        return c

    def log(self) -> str:
        self.stderr.flush()
        with open(self.stderr.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        if os.environ.get("AFFLUENT_KEEP"):
            print(f"kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
