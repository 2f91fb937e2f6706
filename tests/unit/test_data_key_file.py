"""The data key file (pipeline/privacy/keys.py): its format, rotation's new key, generation on first use."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.privacy import keys

SECRET = "s" * 43


def test_a_key_file_round_trips_and_names_the_current_key_first() -> None:
    ring = keys.Keyring("l" * 43, (("k2", "b" * 43), ("k1", "a" * 43)))
    assert keys.parse(keys.render(ring), "file") == ring
    assert ring.current == "k2"
    assert ring.setting == f"lookup:{'l' * 43} k2:{'b' * 43} k1:{'a' * 43}"


def test_rotation_puts_the_next_key_first_and_keeps_the_lookup_key() -> None:
    ring = keys.Keyring("l" * 43, (("k3", "c" * 43), ("k1", "a" * 43))).rotated("d" * 43)
    assert [key_id for key_id, _ in ring.keys] == ["k4", "k3", "k1"]
    assert ring.lookup == "l" * 43
    assert ring.only({"k4"}).keys == (("k4", "d" * 43),)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"k1:{SECRET}\n", "needs a `lookup:` line"),
        (f"lookup:{SECRET}\n", "needs a `lookup:` line and at least one `kN:` line"),
        (f"lookup:{SECRET}\nk1:short\n", "line 2: not `lookup:SECRET`"),
        (f"lookup:{SECRET}\nkey1:{SECRET}\n", "line 2: not `lookup:SECRET`"),
        (f"lookup:{SECRET}\nk1:{SECRET}\nk1:{SECRET}\n", "line 3: k1 given twice"),
    ],
)
def test_a_bad_key_file_is_one_line_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        keys.parse(text, "/etc/nibble/data.key")
    assert str(error.value).startswith("/etc/nibble/data.key") and problem in str(error.value)
    assert "\n" not in str(error.value) and SECRET not in str(error.value)


def test_the_local_key_file_is_generated_once_with_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIBBLE_DATA_KEY_FILE", raising=False)
    monkeypatch.setenv("NIBBLE_STATE_DIR", str(tmp_path))
    first = keys.load()
    path = tmp_path / "secrets" / "data.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load() == first and first.current == "k1"
    assert [p.name for p in path.parent.iterdir()] == ["data.key"]  # nothing left aside


def test_a_configured_key_file_that_is_missing_is_not_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIBBLE_DATA_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match=r"^NIBBLE_DATA_KEY_FILE: cannot read .*missing.key: No such file"):
        keys.load()
    assert not (tmp_path / "missing.key").exists()


def test_saving_replaces_the_file_whole_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    ring = keys.new_keyring()
    keys.save(path, ring)
    keys.save(path, ring.rotated("e" * 43))
    assert keys.load(path).current == "k2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["data.key"]
