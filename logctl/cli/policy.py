"""``logctl policy``: named HA and retention policies, diffed against and applied to the broker."""

from __future__ import annotations

from typing import Annotated

import typer

from logctl.cli import complete
from logctl.cli.app import ConfigOpt, ExchangeOpt, OutputOpt, UrlOpt, app, edge, examples, notify, settings_from
from logctl.config import Settings
from logctl.management import Management, broker_management
from logctl.policy import Change, load_preset, override, preset_names
from logctl.policy import apply as apply_policy
from logctl.policy import diff as diff_policy
from logctl.render import OutputMode, print_table

policy_app = typer.Typer(help="Named high-availability and retention policies for log queues.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

VhostOpt = Annotated[str, typer.Option(help="Virtual host")]
MgmtOpt = Annotated[
    str | None,
    typer.Option("--management-url", help="Management API: http://user:pass@host:15672 (env LOGCTL_MANAGEMENT_URL)"),
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a definition key: key=value; key= removes it")
]
PatternOpt = Annotated[str | None, typer.Option(help="Override the queue name regex")]
PriorityOpt = Annotated[int | None, typer.Option(help="Override the priority")]
ApplyToOpt = Annotated[str | None, typer.Option(help="Override apply-to: queues, exchanges or all")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Name on the broker [default: the preset's name]")]


def _api(settings: Settings) -> Management:
    return broker_management(settings)


@policy_app.command("list", epilog=examples("logctl policy list --output json"))
@edge
def list_cmd(
    vhost: VhostOpt = "/",
    output: OutputOpt = OutputMode.AUTO,
    management: MgmtOpt = None,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the presets logctl ships and the policies live on the broker."""
    settings = settings_from(config, url=url, exchange=exchange, management_url=management)
    rows: list[tuple[object, ...]] = []
    for name in preset_names():
        preset = load_preset(name, settings.exchange)
        rows.append(("preset", name, preset.pattern, preset.apply_to, preset.priority, preset.definition))
    for live in _api(settings).policies(vhost):
        rows.append((f"live {live.vhost}", live.name, live.pattern, live.apply_to, live.priority, live.definition))
    print_table("policies", ("where", "name", "pattern", "apply_to", "priority", "definition"), rows, output)


@policy_app.command("show", epilog=examples("logctl policy show quorum-log --set delivery-limit=10"))
@edge
def show_cmd(
    name: Annotated[str, typer.Argument(help="Preset name or .toml file", autocompletion=complete.presets)],
    sets: SetOpt = None,
    pattern: PatternOpt = None,
    priority: PriorityOpt = None,
    apply_to: ApplyToOpt = None,
    output: OutputOpt = OutputMode.AUTO,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show a preset (or policy file) with overrides applied, as it would be sent."""
    settings = settings_from(config, exchange=exchange)
    preset = override(load_preset(name, settings.exchange), sets or [], pattern, priority, apply_to)
    rows = [("pattern", preset.pattern), ("apply-to", preset.apply_to), ("priority", preset.priority)]
    rows += [(f"definition.{k}", v) for k, v in preset.definition.items()]
    print_table(f"{preset.name}: {preset.description}", ("key", "value"), rows, output)


@policy_app.command("diff", epilog=examples("logctl policy diff quorum-log --set delivery-limit=10"))
@edge
def diff_cmd(
    name: Annotated[str, typer.Argument(help="Preset name or .toml file", autocompletion=complete.presets)],
    vhost: VhostOpt = "/",
    sets: SetOpt = None,
    pattern: PatternOpt = None,
    priority: PriorityOpt = None,
    apply_to: ApplyToOpt = None,
    policy_name: NameOpt = None,
    output: OutputOpt = OutputMode.AUTO,
    management: MgmtOpt = None,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Compare a preset (with overrides) with the policy live on the broker, key by key.

    Exits 0 when they are the same and 1 when they differ, as diff(1) does.
    """
    settings = settings_from(config, url=url, exchange=exchange, management_url=management)
    desired = override(load_preset(name, settings.exchange), sets or [], pattern, priority, apply_to).bind(
        vhost, policy_name
    )
    live = _api(settings).policy(vhost, desired.name)
    diffs = diff_policy(desired, live)
    rows = [(d.key, d.live, d.desired, d.change.value) for d in diffs]
    print_table(f"{desired.name} in vhost {vhost}", ("key", "live", "desired", "change"), rows, output)
    if any(d.change is not Change.SAME for d in diffs):
        raise typer.Exit(1)


@policy_app.command(
    "apply",
    epilog=examples(
        "logctl policy apply quorum-log",
        "logctl policy apply ha-log --set ha-params=3 --dry-run",
        "logctl policy apply ./my-policy.toml --vhost prod",
    ),
)
@edge
def apply_cmd(
    name: Annotated[str, typer.Argument(help="Preset name or .toml file", autocompletion=complete.presets)],
    vhost: VhostOpt = "/",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the changes; apply nothing")] = False,
    sets: SetOpt = None,
    pattern: PatternOpt = None,
    priority: PriorityOpt = None,
    apply_to: ApplyToOpt = None,
    policy_name: NameOpt = None,
    output: OutputOpt = OutputMode.AUTO,
    management: MgmtOpt = None,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Apply a named policy to the broker, then say which queues it now applies to."""
    settings = settings_from(config, url=url, exchange=exchange, management_url=management)
    desired = override(load_preset(name, settings.exchange), sets or [], pattern, priority, apply_to).bind(
        vhost, policy_name
    )
    result = apply_policy(_api(settings), desired, dry_run=dry_run)
    if result.warning:
        notify(f"warning: {result.warning}")
    rows = [(d.key, d.live, d.desired, d.change.value) for d in result.changes]
    print_table(f"{desired.name} in vhost {vhost}", ("key", "live", "desired", "change"), rows, output)
    changed = sum(1 for d in result.changes if d.change is not Change.SAME)
    if dry_run:
        notify(f"dry run: {changed} key(s) would change (the broker accepts the definition); nothing applied")
    elif not result.queues:
        notify(
            f"applied {desired.name} ({changed} key(s) changed); it applies to no queue yet "
            f"(none matches {desired.pattern}); queues declared later that match get it"
        )
    else:
        shown = ", ".join(result.queues[:10]) + (" ..." if len(result.queues) > 10 else "")
        notify(
            f"applied {desired.name} ({changed} key(s) changed); it applies to {len(result.queues)} queue(s): {shown}"
        )


@policy_app.command("delete", epilog=examples("logctl policy delete ha-log"))
@edge
def delete_cmd(
    name: Annotated[str, typer.Argument(help="Policy name on the broker")],
    vhost: VhostOpt = "/",
    management: MgmtOpt = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete a policy from the broker."""
    settings = settings_from(config, url=url, management_url=management)
    _api(settings).delete_policy(vhost, name)
    notify(f"deleted policy {name} in vhost {vhost}")
