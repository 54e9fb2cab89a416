"""policy against the real broker's management API, checked through the API and rabbitmqctl."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from logctl.errors import ConfigError
from logctl.management import Policy
from logctl.policy import check_against_broker, load_preset, override
from tests.conftest import Env, amqp_connect, run_logctl

pytestmark = pytest.mark.integration
API = "http://guest:guest@127.0.0.1:15672"


def api_get(path: str) -> object:
    request = urllib.request.Request("http://127.0.0.1:15672" + path)
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def policy_name(env: Env):
    name = f"{env.exchange}-policy"
    yield name
    run_logctl(["policy", "delete", name], env)


def test_apply_diff_delete_round_trip(env: Env, policy_name: str) -> None:
    queue = env.queue("classic")
    conn = amqp_connect()
    conn.channel().queue_declare(queue, durable=True)
    conn.close()
    scope = ["--name", policy_name, "--pattern", f"^{env.exchange}\\.classic$"]

    applied = run_logctl(["policy", "apply", "ha-log", *scope, "--output", "json"], env)
    assert applied.returncode == 0, applied.stderr
    assert "deprecated" in applied.stderr and "quorum-log" in applied.stderr  # 3.x: applied with a warning
    assert f"applies to 1 queue(s): {queue}" in applied.stderr
    live = api_get(f"/api/policies/%2F/{policy_name}")
    assert live["definition"] == {"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic"}
    listed = subprocess.run(["rabbitmqctl", "-q", "list_policies"], capture_output=True, text=True, check=True).stdout
    assert policy_name in listed
    assert api_get(f"/api/queues/%2F/{queue}")["policy"] == policy_name

    same = run_logctl(["policy", "diff", "ha-log", *scope, "--output", "json"], env)
    assert {r["change"] for r in map(json.loads, same.stdout.splitlines())} == {"same"}
    assert same.returncode == 0, same.stderr  # diff(1)'s convention: 0 the same, 1 different
    changed = run_logctl(["policy", "diff", "ha-log", *scope, "--set", "ha-params=3", "--output", "json"], env)
    assert changed.returncode == 1, changed.stderr
    rows = {r["key"]: r for r in map(json.loads, changed.stdout.splitlines())}
    assert rows["definition.ha-params"]["change"] == "changed"
    assert (rows["definition.ha-params"]["live"], rows["definition.ha-params"]["desired"]) == (2, 3)

    dry = run_logctl(["policy", "apply", "ha-log", *scope, "--set", "ha-params=3", "--dry-run"], env)
    assert dry.returncode == 0 and "nothing applied" in dry.stderr
    assert api_get(f"/api/policies/%2F/{policy_name}")["definition"]["ha-params"] == 2

    deleted = run_logctl(["policy", "delete", policy_name], env)
    assert deleted.returncode == 0, deleted.stderr
    assert policy_name not in json.dumps(api_get("/api/policies/%2F"))


def test_quorum_log_shows_as_effective_policy_on_a_quorum_queue(env: Env, policy_name: str) -> None:
    queue = env.queue("work")
    assert (
        run_logctl(["consume", "--queue", queue, "--exit-when-idle", "0.1s", "--sink", "stdout"], env).returncode == 0
    )
    result = run_logctl(["policy", "apply", "quorum-log", "--name", policy_name], env)
    assert result.returncode == 0, result.stderr
    assert queue in result.stderr
    info = api_get(f"/api/queues/%2F/{queue}")
    assert info["policy"] == policy_name
    assert info["effective_policy_definition"]["delivery-limit"] == 5
    assert info["effective_policy_definition"]["dead-letter-exchange"] == f"{env.exchange}.dlx"
    dlq = api_get(f"/api/queues/%2F/{env.exchange}.dlq")
    assert dlq.get("policy") != policy_name  # the DLQ is left out on purpose


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["policy", "apply", "ha-log", "--management-url", "http://guest:nope@127.0.0.1:15672"], 8, "401"),
        (["policy", "list", "--management-url", "http://guest:guest@127.0.0.1:1"], 4, "rabbitmq-plugins enable"),
        (["policy", "apply", "quorum-log", "--vhost", "no-such-vhost"], 5, "vhost"),
        (["policy", "apply", "quorum-log", "--pattern", "(unclosed", "--name", "bad-pattern"], 6, "rejected"),
        (["policy", "apply", "no-such-preset"], 5, "presets are"),
        (["policy", "apply", "quorum-log", "--set", "queue-type=classic"], 3, "type"),
    ],
)
def test_policy_errors(env: Env, args: list[str], code: int, fragment: str) -> None:
    result = run_logctl(args, env)
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1


def test_classic_mirroring_is_refused_on_rabbitmq_4() -> None:
    policy = load_preset("ha-log", "logs").bind("/")
    with pytest.raises(ConfigError, match=r"removed in 4\.0"):
        check_against_broker(policy, "4.0.5")
    assert check_against_broker(policy, "3.13.1") is not None
    assert check_against_broker(Policy("/", "q", "^x", "queues", 0, {"max-length": 1}), "4.1.0") is None


def test_presets_fill_in_the_exchange_and_take_overrides() -> None:
    preset = override(load_preset("quorum-log", "a.b"), ["delivery-limit=9", "overflow="], priority=7)
    assert preset.pattern == r"^a\.b\.(?!dlq$|unrouted$)"
    assert preset.definition == {"delivery-limit": 9, "max-length": 10000000, "dead-letter-exchange": "a.b.dlx"}
    assert preset.priority == 7


def test_a_dry_run_fails_as_the_apply_would_with_the_brokers_words_unescaped(env: Env, policy_name: str) -> None:
    args = ["policy", "apply", "quorum-log", "--name", policy_name, "--set", "delivery-limit=abc"]
    dry = run_logctl([*args, "--dry-run"], env)
    real = run_logctl(args, env)
    for result in (dry, real):
        assert result.returncode == 6, result.stderr
        assert result.stderr == (
            'logctl: error: the broker rejected the request: Validation failed <<"abc">> is not a valid delivery limit\n'
        )
    names = [p["name"] for p in api_get("/api/policies")]  # type: ignore[union-attr]
    assert not [n for n in names if n.startswith("logctl-dry-run-")]  # the check left nothing behind
    assert policy_name not in names


def test_a_policy_that_matches_no_queue_says_so(env: Env, policy_name: str) -> None:
    scope = ["--name", policy_name, "--pattern", f"^{env.exchange}\\.nothing-here$"]
    applied = run_logctl(["policy", "apply", "quorum-log", *scope], env)
    assert applied.returncode == 0, applied.stderr
    assert f"it applies to no queue yet (none matches ^{env.exchange}\\.nothing-here$)" in applied.stderr


def test_policy_list_json_gives_presets_and_live_policies_the_same_shape(env: Env, policy_name: str) -> None:
    scope = ["--name", policy_name, "--pattern", f"^{env.exchange}\\.x$"]
    assert run_logctl(["policy", "apply", "quorum-log", *scope], env).returncode == 0
    listed = run_logctl(["policy", "list", "--output", "json"], env)
    rows = {(r["where"], r["name"]): r for r in map(json.loads, listed.stdout.splitlines())}
    preset, live = rows[("preset", "quorum-log")], rows[("live /", policy_name)]
    assert isinstance(preset["definition"], dict) and isinstance(live["definition"], dict)
    assert live["definition"]["delivery-limit"] == preset["definition"]["delivery-limit"] == 5
