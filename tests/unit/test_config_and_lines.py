"""Settings precedence, and the byte-level line handling of sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logctl.config import mask_url, resolve
from logctl.errors import ConfigError
from logctl.records import record_of
from logctl.sources import FLAG_INVALID_UTF8, FLAG_NUL, FLAG_TRUNCATED, FileSource, RecordShape


def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('exchange = "from-file"\nbatch_size = 5\nprefetch = 7\n')
    s = resolve({"exchange": "from-flag"}, {"LOGCTL_EXCHANGE": "from-env", "LOGCTL_BATCH_SIZE": "6"}, cfg)
    assert (s.exchange, s.batch_size, s.prefetch, s.linger_ms) == ("from-flag", 6, 7, 200)
    assert s.sources["exchange"] == "flag --exchange"
    assert s.sources["batch_size"] == "LOGCTL_BATCH_SIZE"
    assert "config file" in s.sources["prefetch"]


@pytest.mark.parametrize(
    ("content", "fragment"), [("batch_size = 0\n", "positive"), ("nope = 1\n", "unknown key"), ("[", "not valid TOML")]
)
def test_bad_config_is_a_config_error(tmp_path: Path, content: str, fragment: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        resolve({}, {}, cfg)


def test_a_failover_url_lists_brokers_that_share_the_first_ones_login_and_vhost() -> None:
    settings = resolve({"url": "amqp://u:secret@h1:5701/prod;amqp://h2:5702; amqp://v:w@h3:5703/other"}, {}, None)
    assert settings.urls == (
        "amqp://u:secret@h1:5701/prod",
        "amqp://u:secret@h2:5702/prod",
        "amqp://v:w@h3:5703/other",
    )
    assert settings.primary_url == "amqp://u:secret@h1:5701/prod"
    assert "secret" not in repr(settings) and "secret" not in str(settings.describe())


def test_passwords_are_masked_everywhere() -> None:
    s = resolve({"url": "amqp://bob:s3cret@rabbit:5672/v"}, {}, None)
    assert "s3cret" not in repr(s)
    assert all("s3cret" not in value for _, value, _ in s.describe())
    assert mask_url("amqp://bob:s3cret@rabbit:5672/v") == "amqp://bob:****@rabbit:5672/v"


def read_all(path: Path, max_line: int = 1 << 20, chunk: int = 1 << 16) -> FileSource:
    fd = os.open(path, os.O_RDONLY)
    src = FileSource(str(path), fd, os.fstat(fd), RecordShape("t", max_line))
    first = src.first_line(final=True)
    assert first is not None
    src.identify(first)
    src.begin(0)
    while src.read(chunk):
        pass
    src.finish()
    src.close()
    return src


def test_50mb_line_is_truncated_flagged_and_its_neighbours_kept(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with path.open("wb") as fh:
        fh.write(b"before\n")
        for _ in range(50):
            fh.write(b"x" * (1 << 20))
        fh.write(b"\nafter\n")
    src = read_all(path, max_line=1 << 20)
    records = [record_of(r) for r, _ in src.ready]
    assert [r.message[:6] for r in records] == ["before", "xxxxxx", "after"]
    assert len(records[1].message) == 1 << 20
    assert records[1].attrs[FLAG_TRUNCATED] == 50 << 20
    assert [end for _, end in src.ready][-1] == path.stat().st_size


def test_invalid_utf8_and_nul_are_kept_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "bin.log"
    path.write_bytes(b"ok\nbad \xff\xfe bytes\nnul\x00here\n")
    records = [record_of(r) for r, _ in read_all(path).ready]
    assert records[1].message == "bad \ufffd\ufffd bytes" and records[1].attrs[FLAG_INVALID_UTF8] is True
    assert records[2].message == "nul\x00here" and records[2].attrs[FLAG_NUL] is True
    assert FLAG_INVALID_UTF8 not in records[0].attrs


def test_partial_last_line_is_shipped_only_at_true_end(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    path.write_bytes(b"one\ntwo-without-newline")
    fd = os.open(path, os.O_RDONLY)
    src = FileSource(str(path), fd, os.fstat(fd), RecordShape("t"))
    first = src.first_line(final=False)
    assert first is not None
    src.identify(first)
    src.begin(0)
    while src.read(1 << 16):
        pass
    src.flush_record()
    assert [record_of(r).message for r, _ in src.ready] == ["one"]
    src.finish()
    assert [record_of(r).message for r, _ in src.ready] == ["one", "two-without-newline"]
    src.close()
