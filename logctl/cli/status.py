"""``logctl status``: what ship has confirmed of each file it knows, and how far behind it is."""

from __future__ import annotations

from logctl.checkpoint import CheckpointStore
from logctl.cli.app import ConfigOpt, OutputOpt, StateDirOpt, app, edge, examples, settings_from
from logctl.files import ship_status
from logctl.render import OutputMode, print_table


@app.command(
    "status",
    epilog=examples("logctl status", "logctl status --state-dir /var/lib/logctl --output json | jq .behind"),
)
@edge
def status_cmd(
    output: OutputOpt = OutputMode.AUTO,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the files a state dir knows: their confirmed offsets, sizes and bytes behind.

    Reads the checkpoints only, so it works while ship runs (and without a broker).
    """
    settings = settings_from(config, state_dir=state_dir)
    render_status(CheckpointStore(settings.state_dir), output)


def render_status(store: CheckpointStore, output: OutputMode) -> None:
    """Print the status table of ``store`` (also behind ``ship --status``)."""
    rows = [(r.path, r.offset, r.size, r.behind) for r in ship_status(store)]
    print_table("files", ("path", "offset", "size", "behind"), rows, output)
