"""A headless Chromium driven over the Chrome DevTools Protocol, for the report tests.

The browser talks on a pipe (``--remote-debugging-pipe``): it reads
commands from its fd 3 and writes answers and events to its fd 4, each
message one JSON object followed by a NUL byte. No port, no WebSocket
library, nothing another test session could reach.

    with Browser() as browser:
        page = browser.open("file:///tmp/report.html")
        count = browser.evaluate("document.querySelectorAll('g.bar').length")
        png = browser.screenshot()
        assert not page.errors

Every browser started here is killed, with its process group, and its
profile directory (``lofn-chromium-*`` in the temp directory) removed when
the ``with`` block ends, whatever happened in it.

Run as a script, it makes a screenshot of a page (the one in the docs)::

    python -m tests.browser screenshot report.html docs/_static/report.png
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

#: The browser's command (Debian's ``chromium``, installed by ``scripts/dev.sh setup``).
CHROMIUM = os.environ.get("LOFN_CHROMIUM", "chromium")
FLAGS = ["--headless", "--no-sandbox", "--remote-debugging-pipe", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-background-networking", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class BrowserError(RuntimeError):
    """The browser did not start, answer or behave as the protocol says."""


def find_chromium() -> str | None:
    """The path of the browser, or ``None`` if it is not installed."""
    return shutil.which(CHROMIUM)


@dataclass
class Page:
    """What one page did while it loaded: its errors and the URLs it asked for."""

    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Browser:
    """One headless Chromium with one page, attached in flat mode (a ``sessionId`` per call)."""

    def __init__(self, width: int = 1200, height: int = 900, timeout: float = 30.0) -> None:
        self.width, self.height, self.timeout = width, height, timeout
        self.process: subprocess.Popen | None = None
        self.profile: str | None = None
        self.session: str | None = None
        self.page: Page | None = None
        self._to_browser = self._from_browser = -1
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # -- life -----------------------------------------------------------------

    def __enter__(self) -> Browser:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        executable = find_chromium()
        if executable is None:
            raise BrowserError(f"no {CHROMIUM!r} on PATH")
        self.profile = tempfile.mkdtemp(prefix="lofn-chromium-")
        commands_read, commands_write = os.pipe()
        answers_read, answers_write = os.pipe()
        # above the low numbers, so that moving them to 3 and 4 in the child overwrites neither
        child_in = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(answers_write, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (commands_read, answers_write):
            os.close(fd)
        self._to_browser, self._from_browser = commands_write, answers_read

        def pipes_at_3_and_4() -> None:  # in the child, before exec: dup2 clears CLOEXEC
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        log = open(os.path.join(self.profile, "stderr.log"), "wb")  # noqa: SIM115
        try:
            # close_fds=False: pass_fds would close 3 and 4 after preexec_fn made them; every
            # other descriptor of this process is non-inheritable, so none leaks
            self.process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={self.profile}",
                 f"--window-size={self.width},{self.height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                preexec_fn=pipes_at_3_and_4, start_new_session=True)
        finally:
            log.close()
            os.close(child_in)
            os.close(child_out)
        targets = self.call("Target.getTargets")["targetInfos"]
        pages = [t["targetId"] for t in targets if t["type"] == "page"]
        target = pages[0] if pages else self.call("Target.createTarget",
                                                  url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=self.session)
        # the viewport exactly width x height (the window's frame would take some)
        self.call("Emulation.setDeviceMetricsOverride", session=self.session,
                  width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        """End the browser (politely, then by force) and remove its profile directory."""
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(BrowserError, OSError):
                if process.poll() is None and self._to_browser >= 0:
                    self._send("Browser.close", {}, None)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _end_group(process)
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                os.close(fd)
        self._to_browser = self._from_browser = -1
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def stderr(self) -> str:
        """What the browser wrote to stderr so far (for a failure message)."""
        if self.profile is None:
            return ""
        try:
            with open(os.path.join(self.profile, "stderr.log"), "rb") as log:
                return log.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- the protocol ---------------------------------------------------------

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and return its ``result``; events that arrive meanwhile are kept."""
        ident = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline, f"the answer to {method}")
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self._event(message)

    def wait_for(self, event: str, timeout: float | None = None) -> dict[str, Any]:
        """The ``params`` of the next ``event`` of the page (or one already received)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        for index, message in enumerate(self._events):
            if message["method"] == event and message.get("sessionId") == self.session:
                return dict(self._events.pop(index).get("params", {}))
        while True:
            message = self._receive(deadline, event)
            if "method" not in message:
                continue
            self._event(message)
            if message["method"] == event and message.get("sessionId") == self.session:
                self._events.remove(message)
                return dict(message.get("params", {}))

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data):]
        return self._next_id

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no {waiting_for} within {self.timeout:g} s; browser stderr:"
                                   f"\n{self.stderr()}")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise BrowserError(f"the browser closed its pipe while lofn waited for "
                                       f"{waiting_for}; its stderr:\n{self.stderr()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def _event(self, message: dict[str, Any]) -> None:
        """Keep an event; note the page's errors and requests as they come."""
        self._events.append(message)
        page, params = self.page, message.get("params", {})
        if page is None or message.get("sessionId") != self.session:
            return
        method = message["method"]
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            page.errors.append(f"uncaught exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = [a.get("value", a.get("description")) for a in params.get("args", [])]
            page.errors.append(f"console.error: {' '.join(map(str, args))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            page.errors.append(f"log ({entry.get('source')}): {entry.get('text')} "
                               f"{entry.get('url', '')}".rstrip())
        elif method == "Network.requestWillBeSent":
            page.requests.append(params.get("request", {}).get("url", ""))

    # -- what a test does -----------------------------------------------------

    def open(self, url: str) -> Page:
        """Load ``url`` in the page and wait for its load event; the page's record."""
        self.page = Page(url)
        self._events.clear()
        answer = self.call("Page.navigate", session=self.session, url=url)
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        self.wait_for("Page.loadEventFired")
        # let anything queued by the load (a late script error) arrive
        self.evaluate("new Promise(done => setTimeout(done, 100))", await_promise=True)
        return self.page

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of a JavaScript expression in the page."""
        answer = self.call("Runtime.evaluate", session=self.session, expression=expression,
                           returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, full_page: bool = False) -> bytes:
        """A PNG of the viewport, or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": self.width,
                                "height": size["height"], "scale": 1})
        data = self.call("Page.captureScreenshot", session=self.session, **params)["data"]
        return base64.b64decode(data)


def _end_group(process: subprocess.Popen) -> None:
    """Wait up to 5 s for the browser's process group (its renderers too) to go; kill the rest."""
    for attempt in range(2):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            process.poll()  # reap the leader: a zombie still counts in its group
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.wait()
                return
            time.sleep(0.05)
        if attempt == 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    raise BrowserError(f"the browser's processes (group {process.pid}) outlived SIGKILL")


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height in a PNG's header."""
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "screenshot":
        print("usage: python -m tests.browser screenshot PAGE.html OUT.png", file=sys.stderr)
        return 2
    page, out = os.path.abspath(argv[1]), argv[2]
    with Browser() as browser:
        loaded = browser.open(f"file://{page}")
        if loaded.errors:
            print("\n".join(loaded.errors), file=sys.stderr)
            return 1
        png = browser.screenshot(full_page=True)
    with open(out, "wb") as file:
        file.write(png)
    print(f"{out}: {png_size(png)[0]}x{png_size(png)[1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
