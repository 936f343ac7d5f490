"""The docs state the configuration the code has: docs/configuration.md, generated from the
settings classes by docs/gen_config.py, is up to date; every field of every settings class
(the service's, the client's, monitoring's and each registered model plugin's) is a row of
its tables with its environment variable and default, the tables list nothing else, and
the job options table (docs/api.md) matches ``visionq.options``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from monitoring.settings import MonitoringSettings
from visionq.mqtt.settings import MqttSettings
from visionq.options import TASK_OPTIONS
from visionq.settings import ClientSettings, Settings
from workers import registry

REPO = Path(__file__).resolve().parents[2]
API_PAGE = REPO / "docs" / "api.md"
CONFIG_PAGE = REPO / "docs" / "configuration.md"
CORE_CLASSES: list[type[BaseSettings]] = [Settings, ClientSettings, MonitoringSettings,
                                           MqttSettings]


def plugin_settings_classes() -> list[type[BaseSettings]]:
    classes = []
    for name in registry.available():
        cls = registry.model_class(name).settings_class
        if cls not in classes:
            classes.append(cls)
    return classes


def section(title: str, page: Path) -> str:
    text = page.read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def table_rows(text: str, first_cell: str, every: bool = False) -> list[list[str]]:
    """Rows (cells, stripped) of the table in ``text`` whose header starts ``first_cell``
    (with ``every``: of all such tables)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |")]
    assert starts, f"no table starting {first_cell!r}"
    rows = []
    for start in starts if every else starts[:1]:
        for line in lines[start + 2:]:
            if not line.startswith("|"):
                break
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def documented_variables() -> dict[str, str]:
    """Configuration table: variable -> default as written.  ``A_FACE` / `_DETECT`` names
    share ``A``; one default for several names applies to each, else one per name; a
    trailing ``(remark)`` is not part of the default."""
    found: dict[str, str] = {}
    for names_cell, default_cell, _meaning in table_rows(CONFIG_PAGE.read_text(), "variable",
                                                         every=True):
        names = re.findall(r"`([A-Z0-9_]+)`", names_cell)
        names = [names[0]] + [names[0].rpartition("_")[0] + n if n.startswith("_") else n
                              for n in names[1:]]
        defaults = [re.sub(r"\s*\([^)]*\)$", "", part.strip())
                    for part in default_cell.split(" / ")]
        if len(defaults) == 1:
            defaults *= len(names)
        assert len(defaults) == len(names), f"{names_cell}: {default_cell}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in found, f"{name} is listed twice"
            found[name] = default
    return found


def env_name(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The variable a field is read from (the first alias when it has several)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    if isinstance(alias, str):
        return alias.upper()
    return (cls.model_config.get("env_prefix", "") + name).upper()


def fields() -> list[tuple[str, FieldInfo]]:
    return [(env_name(cls, name, field), field)
            for cls in [*CORE_CLASSES, *plugin_settings_classes()]
            for name, field in cls.model_fields.items()]


def expected_default(field: FieldInfo) -> str | None:
    """How the page must state ``field``'s default, or None for "a literal in backticks
    that validates to the default"."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "default_text" in extra:
        return str(extra["default_text"])
    assert field.default_factory is None, "a computed default needs a default_text"
    if field.default is None:
        return "unset"
    if field.default == "":
        return "empty"
    return None


def test_the_configuration_page_is_generated_from_the_code() -> None:
    """docs/configuration.md is what ``python docs/gen_config.py`` writes from the classes
    now (a field added, a default or description changed: run it)."""
    spec = importlib.util.spec_from_file_location("gen_config", REPO / "docs" / "gen_config.py")
    assert spec is not None and spec.loader is not None
    gen_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_config)
    assert CONFIG_PAGE.read_text() == gen_config.render(), "run python docs/gen_config.py"
    assert gen_config.settings_classes() == [*CORE_CLASSES, *plugin_settings_classes()]


def test_plugins_have_settings_of_their_own() -> None:
    prefixes = [cls.model_config.get("env_prefix") for cls in plugin_settings_classes()]
    assert {"VISIONQ_FACE_", "VISIONQ_DETECT_", "VISIONQ_CLASSIFY_"} <= set(prefixes)


def test_every_variable_is_documented_and_nothing_else() -> None:
    in_code = {name for name, _ in fields()}
    in_readme = set(documented_variables())
    assert not in_code - in_readme, f"missing from the page: {sorted(in_code - in_readme)}"
    assert not in_readme - in_code, f"not settings fields: {sorted(in_readme - in_code)}"
    assert len(in_code) == len(fields()), "two settings fields read the same variable"


@pytest.mark.parametrize(("name", "field"), fields(), ids=[name for name, _ in fields()])
def test_documented_default_is_the_codes(name: str, field: FieldInfo) -> None:
    documented = documented_variables()[name]
    expected = expected_default(field)
    if expected is not None:
        assert documented == expected
        return
    literal = re.fullmatch(r"`([^`]+)`", documented)
    assert literal, f"{name}: write the default {field.default!r} as `literal`"
    value = TypeAdapter(field.rebuild_annotation()).validate_python(literal.group(1))
    assert value == field.default, f"{name}: the page says {documented}, code {field.default!r}"


def test_no_two_classes_share_a_prefix_field() -> None:
    """A plugin's variable must not shadow one of the service's (same name, other class)."""
    names = [name for name, _ in fields()]
    assert len(names) == len(set(names))


def documented_options() -> dict[tuple[str, str], str]:
    return {(task, re.sub(r"`", "", option)): default
            for task, option, _values, default, _meaning
            in table_rows(section("## Job API", API_PAGE), "task")}


def test_job_options_table_is_the_option_models() -> None:
    documented = documented_options()
    in_code = {(task, option) for task, model in TASK_OPTIONS.items()
               for option in model.model_fields}
    assert set(documented) == in_code
    for (task, option), default in documented.items():
        literal = re.match(r"`([^`]+)`", default)
        assert literal, f"{task}.{option}: write the default as `json`"
        value: Any = json.loads(literal.group(1))
        assert value == TASK_OPTIONS[task].model_fields[option].default, (task, option)
