"""Settings and the one function that resolves them.

Precedence: flags > ``LOGCTL_*`` environment > the chosen context of the config file >
the file's top-level keys > defaults. Every value remembers where it came from, so
``logctl config show`` can say so.

Contexts, as kubectl has them: ``[contexts.NAME]`` tables of the same keys, chosen by
``--context``, ``LOGCTL_CONTEXT`` or ``current_context``. A password need not sit in
the file: ``password_file`` (a file holding it) or ``password_env`` (a variable's name)
fill in the URL's.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

from logctl.errors import ConfigError

DEFAULT_URL = "amqp://guest:guest@localhost:5672//"


def _default_state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local/state")
    return Path(base) / "logctl"


def default_config_path(env: Mapping[str, str]) -> Path:
    """Return the config file path: ``$LOGCTL_CONFIG``, else the user config dir."""
    if env.get("LOGCTL_CONFIG"):
        return Path(env["LOGCTL_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "logctl" / "config.toml"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``****`` (each broker's, in a failover list)."""
    if ";" in url:
        return ";".join(mask_url(one) for one in url.split(";"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:****@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _positive_int(raw: object) -> int:
    value = int(str(raw))
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _non_negative_int(raw: object) -> int:
    value = int(str(raw))
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _serializer(raw: object) -> str:
    value = str(raw).lower()
    if value not in ("msgpack", "json"):
        raise ValueError("must be msgpack or json")
    return value


def _bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def broker_urls(url: str) -> tuple[str, ...]:
    """The brokers of a URL, one or several as kombu writes failover (``amqp://h1:5701;amqp://h2:5702``).

    A later entry without a login or vhost takes the first entry's, so a cluster's URL
    need not repeat them: ``amqp://u:p@h1:5701/prod;amqp://h2:5702;amqp://h3:5703``.
    """
    entries = [one.strip() for one in url.split(";") if one.strip()]
    if not entries:
        return (url,)
    first = urlsplit(entries[0])
    urls = [entries[0]]
    for entry in entries[1:]:
        parts = urlsplit(entry)
        netloc = parts.netloc
        if "@" not in netloc and "@" in first.netloc:
            netloc = first.netloc.rsplit("@", 1)[0] + "@" + netloc
        path = parts.path if parts.path not in ("", "/") else first.path
        urls.append(urlunsplit(parts._replace(netloc=netloc, path=path)))
    return tuple(urls)


def _url(raw: object) -> str:
    value = str(raw)
    for one in broker_urls(value):
        if urlsplit(one).scheme not in ("amqp", "amqps"):
            raise ValueError(f"must be amqp:// or amqps:// URLs (several joined by ';'), not {mask_url(value)!r}")
        if not urlsplit(one).hostname and ";" in value:
            raise ValueError(f"each broker in {mask_url(value)!r} needs a host")
    return ";".join(broker_urls(value))


@dataclass(frozen=True, slots=True)
class Settings:
    """Connection and runtime settings of one logctl invocation."""

    url: str = DEFAULT_URL
    exchange: str = "logs"
    state_dir: Path = Path("~/.local/state/logctl")
    serializer: str = "msgpack"
    batch_size: int = 2048  # ship: records per message
    consume_batch_size: int = 8192  # consume: records per sink commit (each commit is an fsync)
    linger_ms: int = 200
    max_in_flight: int = 16
    prefetch: int = 100
    connect_retries: int = 3
    connect_timeout: float = 5.0
    heartbeat: int = 10  # a dead or frozen broker is noticed after two missed beats (~20 s)
    delivery_limit: int = 5
    default_queue: str = ""  # "" = <exchange>.default; "none" = no default queue
    management_url: str = ""  # "" = http://<amqp host>:15672 with the AMQP login
    declare: bool = True  # False: declare nothing, only check passively (users without configure permission)
    ca_file: str = ""  # TLS (amqps://, https management): the CA to trust; "" = the system's
    cert_file: str = ""  # a client certificate (PEM), with key_file
    key_file: str = ""
    insecure: bool = False  # TLS without checking the broker's certificate: only when asked for
    workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, 8))  # ship's parse workers
    timezone: str = ""  # the zone of stamps that write none ("" = UTC)
    formats: Mapping[str, Any] = field(default_factory=dict)  # user-defined formats: [formats.NAME] regex = ...
    path_formats: Mapping[str, str] = field(default_factory=dict)  # glob -> format name, for ship
    edge: Mapping[str, Any] = field(default_factory=dict)  # [edge]: min_level, keep, drop, add_field, redact
    path_edge: Mapping[str, Any] = field(default_factory=dict)  # [path_edge."GLOB"]: the same, per path
    context: str | None = None  # the config file's context these came from
    warnings: tuple[str, ...] = ()  # for the operator: a config file others can read holds a password
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def urls(self) -> tuple[str, ...]:
        """The brokers to try, in order (one, or several from a failover URL)."""
        return broker_urls(self.url)

    @property
    def primary_url(self) -> str:
        """The first broker's URL: where the login, the vhost and the management host come from."""
        return self.urls[0]

    def __repr__(self) -> str:
        return f"Settings(url={mask_url(self.url)!r}, exchange={self.exchange!r}, state_dir={self.state_dir!r})"

    def describe(self) -> list[tuple[str, str, str]]:
        """Return (key, value, source) rows with the password masked."""
        rows = []
        for f in fields(self):
            if f.name in ("sources", "warnings"):
                continue
            value = getattr(self, f.name)
            shown = mask_url(value) if f.name in ("url", "management_url") else str(value)
            rows.append((f.name, shown, self.sources.get(f.name, "default")))
        return rows


# How to parse each setting from text (env, file); flags arrive already typed.
_PARSERS: dict[str, Callable[[object], Any]] = {
    "url": _url,
    "exchange": str,
    "state_dir": lambda raw: Path(str(raw)).expanduser(),
    "serializer": _serializer,
    "batch_size": _positive_int,
    "consume_batch_size": _positive_int,
    "linger_ms": _non_negative_int,
    "max_in_flight": _positive_int,
    "prefetch": _positive_int,
    "connect_retries": _non_negative_int,
    "connect_timeout": lambda raw: float(str(raw)),
    "heartbeat": _non_negative_int,
    "delivery_limit": _positive_int,
    "default_queue": str,
    "management_url": str,
    "declare": _bool,
    "ca_file": lambda raw: str(Path(str(raw)).expanduser()),
    "cert_file": lambda raw: str(Path(str(raw)).expanduser()),
    "key_file": lambda raw: str(Path(str(raw)).expanduser()),
    "insecure": _bool,
    "workers": _non_negative_int,
    "timezone": lambda raw: _timezone(str(raw)),
    "formats": lambda raw: _table(raw, "[formats.NAME] tables, each with regex = '...'"),
    "path_formats": lambda raw: {str(k): str(v) for k, v in _table(raw, 'a table of "glob" = "format"').items()},
    "edge": lambda raw: _table(raw, "a table: min_level, keep, drop, add_field, redact"),
    "path_edge": lambda raw: _table(raw, '[path_edge."GLOB"] tables of min_level, keep, drop, add_field, redact'),
}


def _timezone(name: str) -> str:
    from logctl.parsing.formats import zone_of  # the parsing package is not needed to read settings

    try:
        zone_of(name)
    except ConfigError as exc:
        raise ValueError(str(exc).replace("unknown time zone", "unknown zone")) from exc
    return name


def _table(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be {what}")
    return dict(raw)


def env_name(key: str) -> str:
    """Return the environment variable that sets ``key`` (``LOGCTL_URL`` for ``url``)."""
    return "LOGCTL_" + key.upper()


_FILE_ONLY = frozenset({"password_file", "password_env"})  # keys of the file (and contexts), not settings
_FILE_KEYS = frozenset(_PARSERS) | _FILE_ONLY


def load_file(path: Path) -> dict[str, object]:
    """Read a TOML config file; a missing file is empty, a broken one a ConfigError."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    unknown = sorted(set(data) - _FILE_KEYS - {"contexts", "current_context"})
    contexts = data.get("contexts", {})
    if not isinstance(contexts, dict) or not all(isinstance(c, dict) for c in contexts.values()):
        raise ConfigError(f"config file {path}: contexts are tables, [contexts.NAME]")
    for name, table in contexts.items():
        unknown += [f"contexts.{name}.{key}" for key in sorted(set(table) - _FILE_KEYS)]
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}")
    return data


def contexts_of(file_values: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """The contexts of a loaded config file, by name."""
    found = file_values.get("contexts", {})
    return dict(found) if isinstance(found, dict) else {}


def _chosen_context(
    flags: Mapping[str, object | None], env: Mapping[str, str], file_values: Mapping[str, object], file: Path | None
) -> tuple[str | None, dict[str, object], str]:
    """(name, its keys, where the choice came from); ConfigError for a name the file lacks."""
    for raw, source in (
        (flags.get("context"), "flag --context"),
        (env.get("LOGCTL_CONTEXT"), "LOGCTL_CONTEXT"),
        (file_values.get("current_context"), f"current_context in {file}"),
    ):
        if raw:
            name = str(raw)
            contexts = contexts_of(file_values)
            if name not in contexts:
                known = ", ".join(sorted(contexts)) or "none"
                raise ConfigError(
                    f"context {name!r} (from {source}) is not in config file {file}: contexts are {known}"
                )
            return name, contexts[name], source
    return None, {}, ""


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or "guest"  # as written (already %-encoded where it needs to be)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _password(keys: Mapping[str, object], env: Mapping[str, str], where: str) -> str | None:
    """The password named by ``password_file`` or ``password_env``, if either is set."""
    if keys.get("password_file"):
        path = Path(str(keys["password_file"])).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"password_file {path} ({where}): {exc.strerror}") from exc
    if keys.get("password_env"):
        name = str(keys["password_env"])
        if name not in env:
            raise ConfigError(f"password_env {name} ({where}) is not set")
        return env[name]
    return None


def _readable_by_others(file: Path, file_values: Mapping[str, object]) -> str | None:
    """A warning when a config file that holds a password can be read by group or others."""
    urls = [file_values.get("url"), *(c.get("url") for c in contexts_of(file_values).values())]
    if not any(isinstance(u, str) and urlsplit(u).password for u in urls):
        return None
    try:
        mode = file.stat().st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"config file {file} holds a password and others can read it (mode {mode & 0o777:o}): chmod 600 it"
    return None


def resolve(flags: Mapping[str, object | None], env: Mapping[str, str], file: Path | None) -> Settings:
    """Build Settings from flags (None = not given), environment and config file (and its context)."""
    file_values = load_file(file) if file is not None else {}
    context, context_values, _chosen_by = _chosen_context(flags, env, file_values, file)
    values: dict[str, object] = {"state_dir": _default_state_dir(env)}
    sources: dict[str, str] = {}
    for key, parse in _PARSERS.items():
        candidates = (
            (flags.get(key), "flag --" + key.replace("_", "-")),
            (env.get(env_name(key)), env_name(key)),
            (context_values.get(key), f"context {context} in {file}"),
            (file_values.get(key), f"config file {file}"),
        )
        for raw, source in candidates:
            if raw is None or raw == "":
                continue
            try:
                values[key] = parse(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{key} from {source}: {exc}") from exc
            sources[key] = source
            break
    url = str(values.get("url", DEFAULT_URL))
    if urlsplit(broker_urls(url)[0]).password is None and not sources.get("url", "").startswith(("flag", "LOGCTL_")):
        keys, where = (context_values, f"context {context}") if context_values else (file_values, f"{file}")
        password = _password(keys, env, where)
        if password is not None:
            values["url"] = ";".join(_with_password(one, password) for one in broker_urls(url))
            sources["url"] = sources.get("url", "default") + f", password from {where}"
    warning = _readable_by_others(file, file_values) if file is not None else None
    return Settings(
        **cast(dict[str, Any], values),
        context=context,
        warnings=(warning,) if warning else (),
        sources=sources,
    )


def from_environment(config: Path | None = None, **flags: object) -> Settings:
    """Resolve Settings as a command does: ``flags``, the process's environment, its config file."""
    env = dict(os.environ)
    return resolve(flags, env, config or default_config_path(env))


def use_context(file: Path, name: str) -> None:
    """Make ``name`` the config file's ``current_context`` (the rest of the file is kept as written)."""
    if name not in contexts_of(load_file(file)):
        known = ", ".join(sorted(contexts_of(load_file(file)))) or "none"
        raise ConfigError(f"no context {name!r} in config file {file}: contexts are {known}")
    lines = file.read_text().splitlines(keepends=True)
    line = f'current_context = "{name}"\n'
    for i, existing in enumerate(lines):
        if existing.split("=")[0].strip() == "current_context" and "[" not in existing.split("=")[0]:
            lines[i] = line
            break
    else:
        lines.insert(0, line)  # before any table: a top-level key
    file.write_text("".join(lines))
