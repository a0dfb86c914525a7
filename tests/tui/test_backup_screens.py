"""The backup and restore screens, driven with Pilot against a real file store.

The screens take the engine's test-only arguments (``kdf=`` on backup, ``allow_weak_kdf``
on restore) so each KDF call is milliseconds; the real app never passes them.
"""

from __future__ import annotations

import stat
import time

from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Select

from console import transfer
from console.app import ConsoleApp
from console.screens.backup import BackupScreen
from console.screens.board import BoardScreen
from console.screens.modals.confirm import ConfirmScreen
from console.screens.restore import RestoreScreen
from console.tokens import TokenRecord, format_time

from support.screen_cells import screen_text
from support.tui import loaded_board, notifications, wait_until

SIZE = (120, 40)
WEAK = {"name": "scrypt", "n": 2 ** 10, "r": 8, "p": 1}
PASS = "tui passphrase"


async def seed(service, n: int = 6) -> list[TokenRecord]:
    now = time.time()
    records = [TokenRecord(f"user{i}", f"sk-ant-oat01-{i:010d}AAAAAAAA", f"sk-ant-ort01-{i:010d}BBBBBBBB",
                           now + 3600, account_email=f"user{i}@example.com", updated_at=now - 100)
               for i in range(n)]
    await service.store.put_many(records)
    return records


async def type_into(pilot, selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = ""
    await pilot.press(*text)


async def open_screen(pilot, screen) -> None:
    await loaded_board(pilot)
    pilot.app.push_screen(screen)
    await wait_until(pilot, lambda: pilot.app.screen is screen, what="the screen")
    await pilot.pause()


async def test_backup_screen_writes_the_file(service, tmp_path):
    await seed(service)
    target = tmp_path / "tui.ccbackup"
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = BackupScreen(str(target), kdf=WEAK)
        await open_screen(pilot, screen)
        assert screen.query_one("#backup-passphrase", Input).password    # masked
        await type_into(pilot, "#backup-passphrase", PASS)
        await type_into(pilot, "#backup-repeat", PASS + "x")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "the two passphrases differ" in " ".join(notifications(app)),
                         what="the mismatch")
        assert not target.exists()
        assert PASS not in screen_text(app)

        await type_into(pilot, "#backup-repeat", PASS)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: screen.summary is not None, what="the backup")
        text = screen_text(app)
        assert "✓ Backed up 6 users" in text and "mode 0600" in text
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert screen.query_one("#backup-passphrase", Input).value == ""   # dropped once written
        contents = await transfer.open_backup(target, PASS, allow_weak_kdf=True)
        assert sorted(contents.users) == [f"user{i}" for i in range(6)]
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")


async def test_backup_screen_asks_before_replacing_a_file(service, tmp_path):
    await seed(service, 2)
    target = tmp_path / "exists.ccbackup"
    target.write_bytes(b"older backup")
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = BackupScreen(str(target), kdf=WEAK)
        await open_screen(pilot, screen)
        await type_into(pilot, "#backup-passphrase", PASS)
        await type_into(pilot, "#backup-repeat", PASS)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await pilot.pause(0.1)
        assert target.read_bytes() == b"older backup"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question again")
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.summary is not None, what="the backup")
        assert target.read_bytes() != b"older backup"


async def test_restore_screen_dry_run_confirm_and_result(service, tmp_path):
    records = await seed(service)
    target = tmp_path / "r.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    await service.logout("user1")
    await service.logout("user4")
    stored = await service.get_record("user2")           # newer than the backup: must be kept
    await service.store.put(stored.evolve(access_token="sk-ant-oat01-refreshed-after-backup"))
    before = service.settings.token_path.read_bytes()
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = RestoreScreen(str(target), allow_weak_kdf=True)
        await open_screen(pilot, screen)
        assert screen.query_one("#restore-passphrase", Input).password
        await type_into(pilot, "#restore-passphrase", "wrong passphrase")
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("wrong passphrase" in n for n in notifications(app)),
                         what="the refusal")
        assert screen.plan is None and service.settings.token_path.read_bytes() == before

        await type_into(pilot, "#restore-passphrase", PASS)
        await pilot.press("f5")
        await wait_until(pilot, lambda: screen.plan is not None, what="the dry run")
        table = screen.query_one("#restore-diff", DataTable)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i)[1:3] for i in range(table.row_count)}
        assert rows == {"user1": ["new user", "add"], "user4": ["new user", "add"],
                        "user2": ["stored is newer", "keep"]}
        text = screen_text(app)
        assert "Dry run: nothing written yet" in text and "3 unchanged" in text
        assert service.settings.token_path.read_bytes() == before          # the dry run wrote nothing

        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "Write 2 users into the file store?" in screen_text(app)
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.result is not None, what="the restore")
        assert "✓ Restored 2 users" in screen_text(app)
        assert (await service.get_record("user1")).access_token == records[1].access_token
        assert (await service.get_record("user2")).access_token == "sk-ant-oat01-refreshed-after-backup"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")
        board = await loaded_board(pilot)
        await wait_until(pilot, lambda: board.total == 6, what="the restored users on the board")


async def test_restore_screen_replans_when_the_mode_changes(service, tmp_path):
    await seed(service, 3)
    target = tmp_path / "m.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    stored = await service.get_record("user0")
    await service.store.put(stored.evolve(access_token="sk-ant-oat01-newer-one"))
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        screen = RestoreScreen(str(target), allow_weak_kdf=True)
        await open_screen(pilot, screen)
        await type_into(pilot, "#restore-passphrase", PASS)
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.plan is not None, what="the dry run")
        assert [c.action for c in screen.plan.to_write] == []
        first = screen.plan
        screen.query_one("#restore-overwrite", Select).value = "always"
        await wait_until(pilot, lambda: screen.plan is not first and screen.plan is not None, what="a new plan")
        assert [(c.user_id, c.action) for c in screen.plan.to_write] == [("user0", "replace")]
        table = screen.query_one("#restore-diff", DataTable)
        row = table.get_row_at(0)
        assert row[:3] == ["user0", "stored is newer", "replace"]
        newer = await service.get_record("user0")  # times in UTC, as the CLI and the detail screen
        assert row[3] == "the stored token is newer than the backup's"
        assert row[4] == format_time(newer.updated_at)[:16] and len(row[5]) == 16  # UTC, to the minute
        assert (await service.get_record("user0")).access_token == "sk-ant-oat01-newer-one"


async def test_both_screens_from_the_command_palette(service):
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await loaded_board(pilot)
        for words, screen_type in (("back up", BackupScreen), ("restore tokens", RestoreScreen)):
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
            await pilot.press(*words)
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, screen_type), what=words)
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, BoardScreen), what="the board")


def _in_view(app, widget) -> bool:
    region = widget.region
    return region.height > 0 and region.y >= 0 and region.bottom <= app.size.height


async def test_backup_screen_at_80x24_starts_on_the_passphrase_and_shows_everything(service, tmp_path):
    await seed(service, 2)
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = BackupScreen(str(tmp_path / "small.ccbackup"), kdf=WEAK)
        await open_screen(pilot, screen)
        assert screen.query_one("#backup-passphrase", Input).has_focus
        assert not screen.query_one("#backup-progress").display        # no bar before work
        for selector in ("#backup-path", "#backup-passphrase", "#backup-repeat", "#backup-start",
                         "#backup-result"):
            assert _in_view(app, screen.query_one(selector)), selector
        assert "^s Back up" in screen_text(app).splitlines()[-1]
        await pilot.press(*PASS, "enter", *PASS, "enter")
        await wait_until(pilot, lambda: screen.summary is not None, what="the backup")
        assert screen.query_one("#backup-progress").display
        for selector in ("#backup-result", "#backup-progress"):
            assert _in_view(app, screen.query_one(selector)), selector
        assert "✓ Backed up 2 users" in screen_text(app)


async def test_restore_screen_at_80x24_shows_the_plan_rows_the_why_and_the_keys(service, tmp_path):
    await seed(service, 6)
    target = tmp_path / "r80.ccbackup"
    await transfer.backup(service, target, PASS, kdf=WEAK)
    for uid in ("user1", "user3", "user5"):
        await service.logout(uid)
    app = ConsoleApp(service, refresh_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = RestoreScreen(str(target), allow_weak_kdf=True)
        await open_screen(pilot, screen)
        assert not screen.query_one("#restore-progress").display
        await type_into(pilot, "#restore-passphrase", PASS)
        await pilot.press("f5")
        await wait_until(pilot, lambda: screen.plan is not None, what="the dry run")
        await pilot.pause()
        text = screen_text(app)
        for uid in ("user1", "user3", "user5"):
            row = next((line for line in text.splitlines() if uid in line), "")
            assert "not stored here" in row, f"{uid}: the row and its why are not in view\n{text}"
        assert "Why" in text and "Dry run: nothing written yet" in text
        assert "f5 Show changes" in text.splitlines()[-1] and "^r Restore" in text.splitlines()[-1]
