"""Generate the configuration reference (`docs/configuration.md`) from the pydantic-settings classes.

Discovers every `BaseSettings` subclass defined in `services.common.settings` and in each
`services.<service>.settings` module that exists, and writes one table per class: environment
variable, type, default and meaning, all read from the class (field names, `env_prefix`, aliases,
`Field(description=...)`, constraints). Nothing is read from the environment, so the output is the
same on every machine.

    python -m devtools.config_reference           # write docs/configuration.md
    python -m devtools.config_reference --check   # exit 1 when the file is stale

A settings module that fails to import is an error (never silently left out).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import AliasChoices, AliasPath, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

import services

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "configuration.md"
COMMON_MODULE = "services.common.settings"

_CONSTRAINTS: tuple[tuple[type[Any], str, str], ...] = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "min length"),
    (annotated_types.MaxLen, "max_length", "max length"),
)


@dataclass(frozen=True)
class Setting:
    """One documented setting: where it is read from and what it means."""

    env: tuple[str, ...]
    type: str
    default: str
    meaning: str
    required: bool


@dataclass(frozen=True)
class SettingsClass:
    module: str
    name: str
    summary: str
    settings: tuple[Setting, ...]


def settings_modules() -> list[str]:
    """`services.common.settings` first, then `services.<name>.settings` for every service that has one."""
    names = [COMMON_MODULE]
    for info in sorted(pkgutil.iter_modules(services.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name == "common":
            continue
        candidate = f"services.{info.name}.settings"
        package_dir = Path(services.__path__[0]) / info.name
        if (package_dir / "settings.py").is_file() or (package_dir / "settings" / "__init__.py").is_file():
            names.append(candidate)
    return names


def settings_classes(module_name: str) -> list[type[BaseSettings]]:
    """The `BaseSettings` subclasses defined (not imported) in the module, in source order."""
    module = importlib.import_module(module_name)
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseSettings)
        and value is not BaseSettings
        and value.__module__ == module_name
    ]
    return sorted(found, key=lambda cls: inspect.getsourcelines(cls)[1])


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> tuple[str, ...]:
    """The environment variable(s) pydantic-settings reads for a field (upper-cased, as documented)."""
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    if isinstance(alias, str):
        return (alias.upper(),)
    if isinstance(alias, AliasChoices):
        return tuple(choice.upper() for choice in alias.choices if isinstance(choice, str))
    if isinstance(alias, AliasPath):
        return (str(alias.path[0]).upper(),)
    prefix = str(cls.model_config.get("env_prefix", ""))
    return (f"{prefix}{name}".upper(),)


def describe_type(annotation: Any) -> str:
    """A short, readable type: `int`, `PLAINTEXT | SSL`, `secret`, `str (optional)`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        inner = " \\| ".join(describe_type(arg) for arg in args)
        return f"{inner} (optional)" if len(args) < len(typing.get_args(annotation)) else inner
    if origin is typing.Annotated:
        return describe_type(typing.get_args(annotation)[0])
    if origin is not None:
        inner_types = ", ".join(describe_type(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{inner_types}]"
    if annotation is SecretStr:
        return "secret"
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    return getattr(annotation, "__name__", str(annotation))


def describe_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        factory = field.default_factory
        where = getattr(factory, "__module__", "") or ""
        label = f"{where}.{getattr(factory, '__qualname__', repr(factory))}".lstrip(".")
        return f"computed: `{label}()`"
    if field.default is PydanticUndefined:
        return "(required)"
    value = field.default
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    text = str(value)
    return f"`{text}`" if text else '`""`'


def describe_constraints(field: FieldInfo) -> str:
    parts: list[str] = []
    for item in field.metadata:
        for kind, attribute, symbol in _CONSTRAINTS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(parts)


def collect() -> list[SettingsClass]:
    """Every settings class of every settings module, with its fields (class-level facts only)."""
    result: list[SettingsClass] = []
    for module_name in settings_modules():
        for cls in settings_classes(module_name):
            rows: list[Setting] = []
            for name, field in cls.model_fields.items():
                meaning = (field.description or "").strip()
                constraints = describe_constraints(field)
                if constraints:
                    meaning = f"{meaning} ({constraints})" if meaning else f"({constraints})"
                rows.append(
                    Setting(
                        env=env_names(cls, name, field),
                        type=describe_type(field.annotation),
                        default=describe_default(field),
                        meaning=meaning or "—",
                        required=field.is_required(),
                    )
                )
            summary = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
            result.append(SettingsClass(module_name, cls.__name__, summary, tuple(rows)))
    return result


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if "\\|" not in text else text.replace("\n", " ")


def _lines(classes: list[SettingsClass]) -> Iterator[str]:
    yield "# Configuration reference"
    yield ""
    yield "<!-- GENERATED by `python -m devtools.config_reference`; do not edit by hand. -->"
    yield ""
    yield (
        "Every process reads its settings from environment variables (pydantic-settings). "
        "`services.common.settings` holds what every service shares (Kafka, PostgreSQL, logging, health); "
        "each service adds its own `services/<service>/settings.py`. Names are case-insensitive; "
        "secret values are never logged. The Helm chart (`deploy/helm/contract-sync`) and the compose file "
        "(`deploy/compose`) set these variables; see [deployment.md](deployment.md)."
    )
    yield ""
    yield "Contents:"
    for cls in classes:
        anchor = f"{cls.module}.{cls.name}".lower().replace(".", "")
        yield f"- [`{cls.name}`](#{anchor}) in `{cls.module}`"
    yield ""
    for cls in classes:
        yield f"## `{cls.module}.{cls.name}`"
        yield ""
        if cls.summary:
            yield cls.summary
            yield ""
        yield "| environment variable | type | default | meaning |"
        yield "|---|---|---|---|"
        for setting in cls.settings:
            env = ", ".join(f"`{name}`" for name in setting.env)
            yield f"| {env} | {_cell(setting.type)} | {_cell(setting.default)} | {_cell(setting.meaning)} |"
        yield ""
    yield "## Also read"
    yield ""
    yield (
        "libpq's own variables apply to every PostgreSQL connection (psycopg is built on libpq) when "
        "`DATABASE_URL` does not say otherwise: `PGPASSWORD` (the Helm chart passes the password this way, "
        "from a Secret), `PGSSLMODE` and `PGSSLROOTCERT`. ConnectWise credentials are read from the "
        'environment variables or files that the tenants file names (`{ env = "VAR" }` or '
        '`{ file = "/path" }`), never from the file itself.'
    )
    yield ""


def render(classes: list[SettingsClass] | None = None) -> str:
    """The whole Markdown document (deterministic for given classes)."""
    return "\n".join(_lines(collect() if classes is None else classes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.config_reference", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is not current")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where the Markdown goes")
    args = parser.parse_args(argv)
    text = render()
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"{output} is stale: run python -m devtools.config_reference")
            return 1
        print(f"{output} is current")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
