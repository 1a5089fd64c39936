"""Fixtures of the browser tests: the console served by ``billsync serve`` on a copy of the demo data,
a local SMTP sink for its mail, users of each role, and Debian's Chromium driven by Playwright.

Why this shape:

- The demo workdir (``demo_workdir``, tests/demo_fixture.py) is shared with other tests, so it is
  copied first and the copy's ``billsync.yaml`` points at the copy's database (and at the sink).
- The console runs as the real ``billsync serve`` subprocess, configured and given its users through
  the CLI, exactly as an admin would; it is stopped at the end of the session whatever happens.
- Playwright's own browser download does not work here, so Debian's ``/usr/bin/chromium`` is used.
  Without it these tests skip on a developer's machine but FAIL in CI (``CI`` set by ``.ci/run``),
  so a missing browser can never turn the acceptance tests silently green.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from sync_engine.smtp_sink import SmtpSink

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BILLSYNC = Path(sys.executable).parent / "billsync"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "correct horse battery staple"
ROLES = ("admin", "support", "viewer")


@pytest.fixture(autouse=True, scope="session")
def _chromium_present() -> None:
    """Runs before any other fixture, so a missing browser costs no demo run."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium (make browser)"
    if os.environ.get("CI"):
        pytest.fail(message + "; the browser tests may not skip in CI")
    pytest.skip(message)


@dataclass
class Console:
    """The running console: where it is, its workdir copy and settings file, its mail sink."""

    base_url: str
    workdir: Path
    config: Path
    sink: SmtpSink
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'billsync.db'}"

    def api(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _billsync(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(BILLSYNC), *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"billsync {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _copy_workdir(source: Path, target: Path, smtp_port: int) -> Path:
    """Copy the demo workdir; the copy's settings name the copy's files and the local SMTP sink."""
    shutil.copytree(source, target)
    config = target / "billsync.yaml"
    text = config.read_text(encoding="utf-8").replace(str(source), str(target))
    settings = yaml.safe_load(text)
    settings["database_url"] = f"sqlite:///{target / 'billsync.db'}"
    settings["mail"] = {
        **(settings.get("mail") or {}),
        "host": "127.0.0.1",
        "port": smtp_port,
        "security": "none",
        "from_address": (settings.get("mail") or {}).get("from_address", "billing@demo-seller.example.com"),
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return config


@pytest.fixture(scope="session")
def console(demo_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """``billsync serve`` on a copy of the demo data, with an admin, a support and a viewer user."""
    with SmtpSink() as sink:
        workdir = tmp_path_factory.mktemp("console") / "demo"
        config = _copy_workdir(demo_workdir, workdir, sink.port)
        tokens = {}
        for role in ROLES:
            _billsync(config, "users", "add", role, "--role", role, env={"BILLSYNC_PASSWORD": PASSWORD})
            tokens[role] = _billsync(config, "users", "token", role).strip().splitlines()[-1]
        port = _free_port()
        log = (workdir / "serve.log").open("w", encoding="utf-8")
        server = subprocess.Popen(
            [str(BILLSYNC), "serve", "-c", str(config), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base_url, server, workdir / "serve.log")
            yield Console(base_url, workdir, config, sink, tokens)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=15)
            log.close()


def _wait_until_up(base_url: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(
                f"billsync serve exited with {server.returncode}:\n{log.read_text(encoding='utf-8')[-3000:]}"
            )
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"billsync serve did not answer /health within {timeout} s")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile (user-data-dir) per test: no cookies carried over."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1366, "height": 900},
    )
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Page:
    return browser.pages[0] if browser.pages else browser.new_page()


def log_in(page: Page, console: Console, role: str, next_path: str = "/") -> None:
    """Log in through the form as a person would: user name, password, the button."""
    page.goto(f"{console.base_url}{next_path}")
    assert "/login" in page.url  # not logged in yet: sent to the form
    page.get_by_label("User name").fill(role)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: url == f"{console.base_url}{next_path}")
    assert page.locator("header .who").inner_text().startswith(f"{role} ({role})")
