"""Headless Chromium driven over the DevTools protocol: open a page, time it, collect its errors, screenshot it.

Used by tests/test_html.py and bench/html_page.py. Debian's chromium (``make setup`` installs it),
started with a fresh profile and no background networking, so a page's own requests are the
only ones it makes.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from websockets.sync.client import ClientConnection, connect

BINARY = "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
)
# A sweep page is ready once every Bokeh figure on it has rendered.
BOKEH_READY = ("[...document.querySelectorAll('[data-root-id]')].every(el => window.Bokeh !== undefined"
               " && Bokeh.index[el.dataset.rootId] !== undefined && Bokeh.index[el.dataset.rootId].has_finished())")


@dataclass
class Load:
    """What one page load did."""

    seconds: float
    """Navigation start to the load event and the page's ready check passing."""
    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions and failed loads, as the console shows them."""
    requests: list[str] = field(default_factory=list)
    """Every URL the page requested, the page itself included."""


class Chromium:
    """One headless browser; each load() opens the URL in a new tab."""

    def __init__(self, width: int = 1280, height: int = 900, binary: str = BINARY) -> None:
        self.width, self.height, self.binary = width, height, binary
        self._ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="sweep-chromium-")
        self._proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Chromium writes the port it picked, and the browser's endpoint, to this file once it listens.
        active = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().splitlines()) == 2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{self.binary} did not start its DevTools endpoint")
            time.sleep(0.05)
        port, path = active.read_text().splitlines()
        self._ws: ClientConnection = connect(f"ws://127.0.0.1:{port}{path}", max_size=None)
        self._events: list[dict[str, Any]] = []
        return self

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "_ws", None) is not None:
            self._ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, session: Optional[str] = None, **params: Any) -> dict[str, Any]:
        """One DevTools command and its result; events that arrive meanwhile are kept for wait()."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def wait(self, method: str, session: str, timeout: float = 30) -> dict[str, Any]:
        """The next event of this kind from this tab."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(json.loads(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.001))))

    def drain(self, session: str) -> list[dict[str, Any]]:
        """Take the events received so far from this tab."""
        mine = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return mine

    def load(self, url: str, ready: str = "true", timeout: float = 30) -> Page:
        """Open url in a new tab; returns once the load event fired (within timeout seconds) and the
        JS expression `ready` is true (within the protocol's 60 s)."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session)
        self.send("Emulation.setDeviceMetricsOverride", session, width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        started = time.monotonic()
        self.send("Page.navigate", session, url=url)
        self.wait("Page.loadEventFired", session, timeout)
        page = Page(self, session, target)
        # Checked in the page, every 5 ms: a protocol round trip per check would compete with the
        # page for its main thread.
        page.evaluate(f"new Promise(done => {{ const check = () => ({ready}) ? done(true) : setTimeout(check, 5); "
                      f"check(); }})")
        page.load = Load(time.monotonic() - started)
        page.collect()
        return page


class Page:
    """One open tab."""

    def __init__(self, browser: Chromium, session: str, target: str) -> None:
        self.browser, self.session, self.target = browser, session, target
        self.load = Load(0.0)

    def evaluate(self, expression: str) -> Any:
        """The value of a JS expression (awaited when it is a promise), as JSON."""
        result = self.browser.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True,
                                   awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def collect(self) -> None:
        """Move this tab's console errors and requests seen so far into self.load."""
        for e in self.browser.drain(self.session):
            method, params = e["method"], e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                self.load.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                self.load.errors.append(details.get("exception", {}).get("description") or details["text"])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.load.errors.append(params["entry"]["text"])
            elif method == "Network.requestWillBeSent":
                self.load.requests.append(params["request"]["url"])

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the window, as PNG."""
        size = self.browser.send("Page.getLayoutMetrics", self.session)["cssContentSize"]
        shot = self.browser.send("Page.captureScreenshot", self.session, format="png", captureBeyondViewport=True,
                                 clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.browser.send("Target.closeTarget", targetId=self.target)
