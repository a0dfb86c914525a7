"""Starting the console: bad configuration or storage stops it with one line and an exit code."""

from __future__ import annotations

import os

from console.ui import styles
from console.app import ConsoleApp, run_app


def test_unreadable_store_stops_before_the_screen_opens(console_env, capsys):
    path = console_env["CLAUDE_TOKEN_FILE"]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("{not json")
    os.chmod(path, 0o600)
    code = run_app()
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: token file") and "not valid JSON" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_config_file_is_one_line_and_exit_2(console_env, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("claude_oauth: [this is not a mapping\n")
    code = run_app(config=str(config))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_styles_are_found_in_a_source_checkout():
    for name in ("shared.tcss", "board.tcss", "detail.tcss", "help.tcss"):
        assert styles.styles_path(name).is_file(), name
    assert [p.name for p in ConsoleApp.CSS_PATH] == ["shared.tcss", "board.tcss"]
    names = [p.name for p in styles.stylesheets()]
    assert names[0] == "shared.tcss" and {"board.tcss", "detail.tcss", "help.tcss"} <= set(names)


async def test_every_stylesheet_is_read_after_the_first_paint(service):
    app = ConsoleApp(service)
    async with app.run_test() as pilot:
        await pilot.pause()
        for path in styles.stylesheets():
            assert app.stylesheet.has_source(str(path), ""), path.name
