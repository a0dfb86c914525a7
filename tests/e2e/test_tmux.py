"""One login through the TUI in a real terminal: tmux runs ``claude-console sandbox``.

Keys go in with ``send-keys``, the screen comes back with ``capture-pane``; the sandbox's
own emulator approves the URL read off the screen, over its HTTP API, as a browser would.
Every wait is bounded, the tmux server has a socket of its own and is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest

from support.waiting import wait_for_sync

from .helpers import SCRIPT

pytestmark = pytest.mark.e2e

IN_CI = os.environ.get("CI", "").lower() == "true"
WIDTH, HEIGHT = 600, 60   # wide enough for the QR code and the whole URL on one line
URL_RE = re.compile(r"https?://[^\s/]+/oauth/authorize\?\S+")


def _tmux_binary() -> str:
    found = shutil.which("tmux") or ("/usr/bin/tmux" if os.path.exists("/usr/bin/tmux") else None)
    if found is None:
        message = "tmux is not installed (apt-get install tmux): the terminal end-to-end test needs it"
        if IN_CI:
            pytest.fail(f"{message} (CI=true requires it)")
        pytest.skip(message)
    return found


class Tmux:
    """A private tmux server (its own socket) with one window running one command."""

    def __init__(self, binary: str, env: dict[str, str]) -> None:
        self.binary = binary
        self.socket = f"cc-e2e-{uuid.uuid4().hex[:10]}"
        self.env = env

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([self.binary, "-L", self.socket, "-f", "/dev/null", *args],
                              env=self.env, capture_output=True, text=True, timeout=20)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, command: str, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
        # The shell keeps the pane (and any traceback) after the app exits, for the failure report.
        self.run("new-session", "-d", "-s", "e2e", "-x", str(size[0]), "-y", str(size[1]),
                 f"{command}; echo; echo \"APP EXITED: $?\"; sleep 60")

    def keys(self, *keys: str, literal: bool = False) -> None:
        # "--": a pasted code may start with "-", which tmux would read as a flag
        self.run("send-keys", "-t", "e2e", *(["-l"] if literal else []), "--", *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "e2e", check=False)

    def screen_with_colours(self) -> str:
        """The pane with its SGR sequences (``capture-pane -e``): what a terminal would draw."""
        return self.run("capture-pane", "-p", "-e", "-t", "e2e", check=False)

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> str:
        def seen() -> str | None:
            text = self.screen()
            if predicate(text):
                return text
            if "APP EXITED" in text:
                raise AssertionError(f"waiting for {what}: the app exited; the terminal shows:\n{text}")
            return None

        return wait_for_sync(seen, timeout, what=what, show=lambda: f"the terminal shows:\n{self.screen()}",
                             interval=0.2)

    def stop(self, quit_keys: tuple[str, ...], timeout: float = 10.0) -> None:
        """Quit the app with its own keys (so it cleans up), then kill the server and its socket."""
        try:
            for key in quit_keys:  # one at a time: "Escape q" sent together reads as alt+q
                self.keys(key)
                time.sleep(0.3)
            with contextlib.suppress(AssertionError):  # the server is killed below in any case
                wait_for_sync(lambda: "APP EXITED" in self.screen(), timeout, what="the app to exit", interval=0.2)
        finally:
            self.run("kill-server", check=False)
            folder = os.environ.get("TMUX_TMPDIR") or "/tmp"
            socket = os.path.join(folder, f"tmux-{os.getuid()}", self.socket)
            if os.path.exists(socket):
                os.unlink(socket)


def _clean_env(home: str, tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_", "DATABASE_", "REDIS_", "CONSOLE_", "LITELLM_", "PYTEST_", "TMUX"))}
    env.update(HOME=home, TMPDIR=tmp, TERM="xterm-256color")  # the sandbox's folder lands in TMPDIR
    for name in ("NO_COLOR", "DISPLAY", "WAYLAND_DISPLAY", "COLUMNS", "LINES"):
        env.pop(name, None)  # the size comes from the tmux window, no browser is opened
    return env


def _url_on(screen: str) -> str:
    """The authorize URL; should it wrap after all, its next lines start in the same column."""
    lines = screen.splitlines()
    for index, line in enumerate(lines):
        found = URL_RE.search(line)
        if found is None:
            continue
        url, column = found.group(0), found.start()
        for more in lines[index + 1:]:
            piece = more[column:].strip() if len(more) > column else ""
            if not piece or " " in piece:
                break
            url += piece
        return url
    raise AssertionError(f"no authorize URL on screen:\n{screen}")


def _approve(emulator: str, url: str, email: str) -> dict:
    request = urllib.request.Request(f"{emulator}/_emulator/approve",
                                     data=json.dumps({"url": url, "email": email}).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_login_through_the_tui_in_tmux(tmp_path):
    binary = _tmux_binary()
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    command = shlex.quote(str(SCRIPT)) if SCRIPT.exists() else \
        f"{shlex.quote(sys.executable)} -m console"
    tmux = Tmux(binary, _clean_env(str(home), str(tmp)))
    try:
        tmux.start(f"{command} sandbox")
        tmux.wait_for(lambda s: "SANDBOX" in s and "Login" in s, "the board of the sandbox", timeout=30)

        tmux.keys("l")
        tmux.wait_for(lambda s: "Log in a user" in s, "the login screen")
        tmux.keys("C-u")  # the field starts with the default user
        tmux.wait_for(lambda s: "▊  user id " in s, "the user field to empty")
        tmux.keys("e2e-user", literal=True)
        tmux.wait_for(lambda s: "▊  e2e-user " in s, "the typed user id")
        tmux.keys("Enter")
        text = tmux.wait_for(lambda s: URL_RE.search(s) is not None, "the authorize URL")
        url = _url_on(text)
        assert "SANDBOX: this URL goes to the local emulator" in text
        assert "▀" in text or "▄" in text, "the QR code should be on screen at this size"

        parts = urlsplit(url)
        approved = _approve(f"{parts.scheme}://{parts.netloc}", url, "e2e@example.com")
        tmux.keys(approved["pasted"], literal=True)
        tmux.wait_for(lambda s: approved["pasted"] in s, "the pasted code in its field")
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "Logged in user e2e-user" in s and "e2e@example.com" in s,
                      "the success message")

        tmux.keys("Enter")
        tmux.wait_for(lambda s: any("e2e-user" in line and "active" in line and "Log in" not in line
                                    for line in s.splitlines()), "the user active on the board")
    finally:
        tmux.stop(("Escape", "Escape", "q"))  # leave any screen, then quit from the board


# -- the QR code read off the terminal ------------------------------------------------------

SGR_RE = re.compile(r"\x1b\[([0-9;:]*)m")
_BASIC = [(0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205),
          (0, 205, 205), (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0),
          (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255)]


def _palette(n: int) -> tuple[int, int, int]:
    """xterm's 256 colours."""
    if n < 16:
        return _BASIC[n]
    if n < 232:
        n -= 16
        level = [0, 95, 135, 175, 215, 255]
        return level[n // 36], level[n // 6 % 6], level[n % 6]
    grey = 8 + 10 * (n - 232)
    return grey, grey, grey


def _dark(rgb) -> bool:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b < 128


def terminal_cells(captured: str) -> list[list[tuple[str, bool, bool]]]:
    """``capture-pane -e`` output -> rows of (character, ink dark, background dark). The
    terminal's default colours are light text on a dark background."""
    rows = []
    fg = bg = None
    reverse = False
    for line in captured.split("\n"):
        row, at = [], 0
        for match in [*SGR_RE.finditer(line), None]:
            end = match.start() if match else len(line)
            for ch in line[at:end]:
                ink = _dark(fg) if fg is not None else False
                paper = _dark(bg) if bg is not None else True
                row.append((ch, paper, ink) if reverse else (ch, ink, paper))
            if match is None:
                break
            at = match.end()
            params = [int(p) if p.isdigit() else 0 for p in match.group(1).replace(":", ";").split(";")]
            i = 0
            while i < len(params):
                p = params[i]
                if p == 0:
                    fg = bg = None
                    reverse = False
                elif p == 7:
                    reverse = True
                elif p == 27:
                    reverse = False
                elif 30 <= p <= 37 or 90 <= p <= 97:
                    fg = _palette(p - 30 if p < 90 else p - 82)
                elif 40 <= p <= 47 or 100 <= p <= 107:
                    bg = _palette(p - 40 if p < 100 else p - 92)
                elif p == 39:
                    fg = None
                elif p == 49:
                    bg = None
                elif p in (38, 48) and i + 1 < len(params):
                    if params[i + 1] == 5 and i + 2 < len(params):
                        color, i = _palette(params[i + 2]), i + 2
                    elif params[i + 1] == 2 and i + 4 < len(params):
                        color, i = tuple(params[i + 2:i + 5]), i + 4
                    else:
                        color = None
                    if p == 38:
                        fg = color
                    else:
                        bg = color
                i += 1
        rows.append(row)
    rows = [row for row in rows if row] or [[]]
    width = max(len(row) for row in rows)
    return [row + [(" ", False, True)] * (width - len(row)) for row in rows]


def _decode_pane(tmux: Tmux) -> list[str]:
    from support.qr_pixels import cells_image, decode, with_margin  # needs zxing-cpp and pillow

    return decode(cells_image(with_margin(terminal_cells(tmux.screen_with_colours()))))


def test_login_at_80x24_by_scanning_the_code_off_the_terminal(tmp_path):
    """The operator's usual terminal: the code is read off the screen, as a phone would."""
    pytest.importorskip("zxingcpp")
    binary = _tmux_binary()
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    command = shlex.quote(str(SCRIPT)) if SCRIPT.exists() else \
        f"{shlex.quote(sys.executable)} -m console"
    tmux = Tmux(binary, _clean_env(str(home), str(tmp)))
    try:
        tmux.start(f"{command} sandbox", size=(80, 24))
        tmux.wait_for(lambda s: "SANDBOX" in s and "Login" in s, "the board of the sandbox", timeout=30)
        tmux.keys("l")
        tmux.wait_for(lambda s: "Log in a user" in s, "the login screen")
        tmux.keys("C-u")
        tmux.wait_for(lambda s: "▊  user id " in s, "the user field to empty")
        tmux.keys("small-term", literal=True)
        tmux.wait_for(lambda s: "▊  small-term " in s, "the typed user id")
        tmux.keys("Enter")
        text = tmux.wait_for(lambda s: "F4 shows" in s, "the size note")
        assert "This terminal is 80×24" in text

        tmux.keys("F4")
        tmux.wait_for(lambda s: "Log in user" not in s and s.count("\n") >= 20, "the full-screen code")
        time.sleep(0.3)
        found = _decode_pane(tmux)
        assert len(found) == 1 and URL_RE.fullmatch(found[0]), f"decoded {found!r} off:\n{tmux.screen()}"
        url = found[0]
        parts = urlsplit(url)
        approved = _approve(f"{parts.scheme}://{parts.netloc}", url, "small@example.com")

        tmux.keys("Escape")
        tmux.wait_for(lambda s: "CODE#STATE" in s, "the login screen again")
        tmux.keys(approved["pasted"], literal=True)
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "Logged in user small-term" in s and "small@example.com" in s,
                      "the success message")
    finally:
        tmux.stop(("Escape", "Escape", "q"))


async def test_usage_on_the_board_in_tmux(tmp_path, console_env, emulator, service, login):
    """The board in a real terminal shows each account's 5-hour and weekly usage, asked for by
    the board itself (no refresher runs), and sorts by it with ``u``."""
    binary = _tmux_binary()
    emulator.state.configure(profile_shape="email", usage_by_email={
        "ada@example.com": {"five_hour": 96, "seven_day": 20},
        "bob@example.com": {"five_hour": 12, "seven_day": 85}})
    for uid in ("ada", "bob"):
        await login(service, uid)
    await service.aclose()   # the terminal's console is the only process from here on
    home, tmp = tmp_path / "home-tmux", tmp_path / "tmp-tmux"
    home.mkdir()
    tmp.mkdir()
    env = {**_clean_env(str(home), str(tmp)), **console_env}
    command = shlex.quote(str(SCRIPT)) if SCRIPT.exists() else f"{shlex.quote(sys.executable)} -m console"
    tmux = Tmux(binary, env)

    def rows(screen: str) -> list[str]:
        return [line for line in screen.splitlines() if "@example.com" in line]

    try:
        tmux.start(command, size=(120, 30))
        text = tmux.wait_for(lambda s: any("96%" in line for line in rows(s)) and
                             any("12%" in line for line in rows(s)), "the 5H usage of both users", timeout=30)
        assert "96%!!" in next(line for line in rows(text) if "ada" in line)  # readable without colour
        def order(screen: str) -> list[str]:
            return ["ada" if "ada@" in line else "bob" for line in rows(screen)]

        tmux.keys("u")   # sort by 5-hour usage: lowest first
        tmux.wait_for(lambda s: "sorted by 5h" in s and "(reversed)" not in s and order(s) == ["bob", "ada"],
                      "the 5h sort, lowest first")
        tmux.keys("u")   # again: highest first
        tmux.wait_for(lambda s: "sorted by 5h (reversed)" in s and order(s) == ["ada", "bob"],
                      "the 5h sort reversed, highest first")
    finally:
        tmux.stop(("Escape", "q"))
    assert sorted(emulator.state.usage_counts()) == ["ada@example.com", "bob@example.com"]
