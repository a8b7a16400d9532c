from pathlib import Path

import pytest

from cairn.settings import SETTINGS, Settings, settings_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_docs_settings_page_is_generated_from_the_table() -> None:
    assert DOCS.read_text() == settings_markdown(), "run `make docs` to regenerate docs/settings.md"


def test_every_setting_has_help_and_an_env_var() -> None:
    for setting in SETTINGS:
        assert setting.help.strip(), setting.name
        assert setting.env == "CAIRN_" + setting.name.upper()


def test_environment_then_overrides() -> None:
    env = {"CAIRN_PORT": "9001", "CAIRN_DATA_DIR": "/tmp/x", "CAIRN_SOURCE_CACHE_SECONDS": "0.5"}
    settings = Settings.load({"port": 9002}, environ=env)
    assert settings.port == 9002
    assert settings.data_dir == Path("/tmp/x")
    assert settings.source_cache_seconds == 0.5
    assert Settings.load(environ={}).port == 8000


def test_empty_environment_value_means_default() -> None:
    assert Settings.load(environ={"CAIRN_DATABASE_URL": ""}).database_url == ""


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(KeyError):
        Settings.load({"nope": 1}, environ={})


def test_database_url_in_effect() -> None:
    assert Settings(data_dir=Path("d")).database == "sqlite:///d/cairn.db"
    assert Settings(database_url="postgresql://x/y").database == "postgresql://x/y"
