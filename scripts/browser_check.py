#!/usr/bin/env python
"""Open the report in headless Chromium: a full-page screenshot, and fail on console errors.

    python scripts/browser_check.py results/report/index.html docs/report-screenshot.png

Talks to Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe), so it needs no
extra package: console calls, uncaught exceptions and log entries (failed image loads among
them) are collected while the page loads. Exit 0 = clean, 1 = errors, 2 = no Chromium on PATH
(the caller decides whether that is a skip; tests/unit/test_report_browser.py reports it as one).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class DevTools:
    """Minimal DevTools-protocol client over Chromium's fd 3 (in) / fd 4 (out), NUL-framed JSON."""

    def __init__(self, chromium: str, profile: str):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire():  # runs in the child: the protocol's fixed descriptors (dup first, then place)
            read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        # close_fds=False: subprocess would otherwise close fds 3 and 4 after wire() placed them.
        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}"], preexec_fn=wire,
                                     close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r), os.close(from_child_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read_message(deadline))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def problems(events: list[dict]) -> tuple[list[str], list[str]]:
    """(every console/log line, the errors among them)."""
    messages, errors = [], []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            line = f"console.{params.get('type')}: {text}"
            messages.append(line)
            if params.get("type") in ("error", "assert"):
                errors.append(line)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            line = f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
            messages.append(line), errors.append(line)
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            line = f"{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}".strip()
            messages.append(line)
            if entry.get("level") == "error":
                errors.append(line)
    return messages, errors


# The report must tell its story in under this many CSS pixels at this width.
WIDTH, HEIGHT_LIMIT = 1400, 15000


def check(html: Path, screenshot: Path, width: int = WIDTH, max_height: int = 16000,
          height_limit: int | None = None) -> tuple[list[str], list[str]]:
    """Load ``html``, write a full-page PNG to ``screenshot``; (console messages, errors). A page
    taller than ``height_limit`` is an error naming its height."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found on PATH (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        tools = DevTools(chromium, profile)
        try:
            target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                tools.call(f"{domain}.enable", session=session)
            tools.call("Emulation.setDeviceMetricsOverride",
                       {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
            tools.call("Page.navigate", {"url": html.resolve().as_uri()}, session)
            tools.wait_for("Page.loadEventFired")
            height = tools.call("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
            tools.call("Emulation.setDeviceMetricsOverride",
                       {"width": width, "height": int(min(height, max_height)), "deviceScaleFactor": 1,
                        "mobile": False}, session)
            shot = tools.call("Page.captureScreenshot", {"format": "png"}, session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            time.sleep(0.2)
            tools.call("Runtime.evaluate", {"expression": "1"}, session)  # flush pending events
        finally:
            tools.close()
    messages, errors = problems(tools.events)
    messages.append(f"page height {int(height)} px at {width} px width")
    if height_limit is not None and height > height_limit:
        errors.append(f"page is {int(height)} px tall at {width} px width, over the {height_limit} px limit")
    return messages, errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("screenshot", type=Path)
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("SKIP: chromium not found on PATH (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    messages, errors = check(args.html, args.screenshot, height_limit=HEIGHT_LIMIT)
    for line in messages:
        print(line)
    for line in errors:
        print("ERROR:", line, file=sys.stderr)
    print(f"{len(messages)} console messages, {len(errors)} errors; screenshot {args.screenshot}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
