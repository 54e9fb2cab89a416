"""Named high-availability and retention policies: presets, overrides, diff against the broker.

Presets are small TOML files shipped in ``logctl/presets/``; users add their own files
(``logctl policy apply ./mine.toml``). ``{exchange}`` in a preset stands for the main
exchange (regex-escaped in patterns).
"""

from __future__ import annotations

import os
import re
import time
import tomllib
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from logctl.errors import ConfigError, NotFound
from logctl.management import Management, Policy

PRESET_DIR = Path(__file__).parent / "presets"
CLASSIC_MIRRORING_KEYS = frozenset(
    {"ha-mode", "ha-params", "ha-sync-mode", "ha-promote-on-shutdown", "ha-promote-on-failure"}
)
QUEUE_TYPE_KEYS = frozenset({"queue-type", "x-queue-type"})


@dataclass(frozen=True, slots=True)
class Preset:
    """A policy as written in a TOML file, before it is bound to a vhost."""

    name: str
    description: str
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]
    source: str

    def bind(self, vhost: str, name: str | None = None) -> Policy:
        return Policy(vhost, name or self.name, self.pattern, self.apply_to, self.priority, dict(self.definition))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _fill(value: Any, exchange: str, in_pattern: bool) -> Any:
    if isinstance(value, str):
        return value.replace("{exchange}", re.escape(exchange) if in_pattern else exchange)
    return value


def load_preset(name_or_file: str, exchange: str) -> Preset:
    """Load a shipped preset by name, or a user's TOML file by path."""
    path = Path(name_or_file)
    if not (path.suffix == ".toml" and path.exists()):
        path = PRESET_DIR / f"{name_or_file}.toml"
    if not path.exists():
        raise NotFound(
            f"no policy preset {name_or_file!r}: presets are {', '.join(preset_names())}, or give a .toml file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
    missing = {"pattern", "definition"} - set(data)
    if missing:
        raise ConfigError(f"policy file {path} lacks {', '.join(sorted(missing))}")
    return Preset(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        pattern=_fill(data["pattern"], exchange, in_pattern=True),
        apply_to=str(data.get("apply-to", "queues")),
        priority=int(data.get("priority", 0)),
        definition={k: _fill(v, exchange, in_pattern=False) for k, v in data["definition"].items()},
        source=str(path),
    )


def _value(text: str) -> Any:
    """A ``--set`` value: TOML scalar syntax (5, true, "x"), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def override(
    preset: Preset,
    sets: list[str],
    pattern: str | None = None,
    priority: int | None = None,
    apply_to: str | None = None,
) -> Preset:
    """Return the preset with ``--set key=value`` (``key=`` removes a key) and the other overrides."""
    definition = dict(preset.definition)
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write key=value, for example --set ha-params=3")
        if raw == "":
            definition.pop(key, None)
        else:
            definition[key] = _value(raw)
    return replace(
        preset,
        definition=definition,
        pattern=pattern if pattern is not None else preset.pattern,
        priority=priority if priority is not None else preset.priority,
        apply_to=apply_to if apply_to is not None else preset.apply_to,
    )


class Change(StrEnum):
    SAME = "same"
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class KeyDiff:
    key: str
    live: Any
    desired: Any
    change: Change


def diff(desired: Policy, live: Policy | None) -> list[KeyDiff]:
    """Compare per key: pattern, apply-to, priority and each definition key."""

    def one(key: str, have: Any, want: Any) -> KeyDiff:
        if have is None:
            return KeyDiff(key, None, want, Change.ADDED)
        if want is None:
            return KeyDiff(key, have, None, Change.REMOVED)
        return KeyDiff(key, have, want, Change.SAME if have == want else Change.CHANGED)

    live_def = live.definition if live else {}
    rows = [
        one("pattern", live.pattern if live else None, desired.pattern),
        one("apply-to", live.apply_to if live else None, desired.apply_to),
        one("priority", live.priority if live else None, desired.priority),
    ]
    for key in sorted(set(live_def) | set(desired.definition)):
        rows.append(one(f"definition.{key}", live_def.get(key), desired.definition.get(key)))
    return rows


def check_against_broker(policy: Policy, version: str) -> str | None:
    """Refuse what the broker cannot do; return a warning for what it does but should not."""
    if QUEUE_TYPE_KEYS & set(policy.definition):
        raise ConfigError("a policy cannot change a queue's type: declare the queue as quorum (logctl does) instead")
    if not CLASSIC_MIRRORING_KEYS & set(policy.definition):
        return None
    major = int(version.split(".")[0]) if version[:1].isdigit() else 0
    if major >= 4:
        raise ConfigError(
            f"RabbitMQ {version} has no classic mirrored queues (removed in 4.0): apply quorum-log instead"
        )
    return (
        f"classic queue mirroring is deprecated since RabbitMQ 3.9 and removed in 4.0 (broker is {version}); "
        "it does nothing for quorum queues: consider quorum-log"
    )


@dataclass(frozen=True, slots=True)
class Applied:
    policy: Policy
    warning: str | None
    changes: list[KeyDiff]
    queues: list[str]


def _matches(policy: Policy, queue: str) -> bool:
    try:
        return policy.apply_to in ("queues", "all") and re.search(policy.pattern, queue) is not None
    except re.error:
        return False


def read_back(api: Management, policy: Policy, *, timeout_s: float = 15.0) -> list[str]:
    """Return the queues the broker says the policy applies to.

    The broker applies policies at once, but the management API reports them from its
    statistics, refreshed every few seconds: wait (bounded) until every queue whose name
    matches the pattern shows a policy, then read which of them show this one.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        seen = api.queue_policies(policy.vhost)
        pending = [q for q, name in seen.items() if _matches(policy, q) and name is None]
        if not pending or time.monotonic() >= deadline:
            return sorted(q for q, name in seen.items() if name == policy.name)
        time.sleep(0.5)


NO_QUEUE = "(?!)"  # a regex that matches no name: the pattern of a policy put only to be checked


def validate_on_broker(api: Management, policy: Policy) -> None:
    """Have the broker check a definition without applying it (a dry run must fail as the apply would).

    RabbitMQ validates a policy only when it is put, and has no check-only call: the same
    definition is put under a name of its own, with a pattern that matches no queue, and
    deleted at once. The broker's rejection (``<<"abc">> is not a valid delivery limit``)
    is raised as it would be by the apply.
    """
    probe = replace(policy, name=f"logctl-dry-run-{os.getpid()}-{policy.name}", pattern=NO_QUEUE)
    api.put_policy(probe)
    api.delete_policy(probe.vhost, probe.name)


def apply(api: Management, policy: Policy, *, dry_run: bool = False) -> Applied:
    """Put the policy (unless ``dry_run``) and report which queues it now applies to."""
    if not api.vhost_exists(policy.vhost):
        raise NotFound(f"vhost {policy.vhost!r} does not exist")
    warning = check_against_broker(policy, api.version())
    changes = diff(policy, api.policy(policy.vhost, policy.name))
    if dry_run:
        validate_on_broker(api, policy)
        return Applied(policy, warning, changes, [])
    api.put_policy(policy)
    return Applied(policy, warning, changes, read_back(api, policy))
