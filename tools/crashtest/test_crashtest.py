"""Tests of the crash test's pure logic: arguments, backends, and the helpers that set up
PostgreSQL and moto for `--backend pg-s3`. Nothing here starts a server.

    python3 -m pytest -q tools/crashtest
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crashtest  # noqa: E402
import external  # noqa: E402


# ---- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, seeds", [
    ("1", [1]), ("1,2,5", [1, 2, 5]), ("1-4", [1, 2, 3, 4]), ("3-3", [3]), ("1-2,7", [1, 2, 7]),
])
def test_seed_lists(text: str, seeds: list[int]) -> None:
    assert crashtest.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "1,", "5-3", "1-x"])
def test_bad_seed_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        crashtest.parse_seeds(text)


@pytest.mark.parametrize("text, interval", [("2:6", (2.0, 6.0)), ("3", (3.0, 3.0)), ("0.5:0.5", (0.5, 0.5))])
def test_kill_intervals(text: str, interval: tuple[float, float]) -> None:
    assert crashtest.parse_kill_interval(text) == interval


@pytest.mark.parametrize("text", ["0:1", "3:2", "-1:2", "x", ":4"])
def test_bad_kill_intervals_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        crashtest.parse_kill_interval(text)


def test_bad_arguments_exit_with_usage_status(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--seeds", "5-3"], ["--backend", "sqlite"], ["--kill-interval", "0"]):
        with pytest.raises(SystemExit) as e:
            crashtest.main(argv)
        assert e.value.code == 2, argv


def test_missing_programs_are_named(tmp_path: Path) -> None:
    (tmp_path / "loadgen").write_text("#!/bin/sh\n")
    (tmp_path / "loadgen").chmod(0o755)
    missing = " ".join(crashtest.missing_prerequisites("pg-s3", tmp_path))
    assert "txn-coordinator is missing" in missing and "txn-verify is missing" in missing
    assert "loadgen is missing" not in missing
    assert "blob-store" not in missing and "consensus is missing" not in missing, "pg-s3 runs no storage servers"
    cluster = " ".join(crashtest.missing_prerequisites("cluster", tmp_path))
    assert "blob-store is missing" in cluster and "consensus is missing" in cluster


# ---- backends ----------------------------------------------------------------------------


def test_backends_run_the_expected_roles() -> None:
    assert crashtest.BACKEND_ROLES["cluster"] == ("blob-store", "consensus", "txn-coordinator")
    assert crashtest.BACKEND_ROLES["pg-s3"] == ("txn-coordinator",)
    assert set(crashtest.BACKENDS) == set(crashtest.BACKEND_ROLES) == set(crashtest.BACKEND_TOOLS)


def test_pg_s3_self_test_keeps_only_the_coordinators_bugs() -> None:
    assert set(crashtest.self_tests_for("cluster")) == set(crashtest.SELF_TESTS)
    assert set(crashtest.self_tests_for("pg-s3")) == {"commit-first-shard-only"}


def options(tmp_path: Path, backend: str) -> crashtest.Options:
    return crashtest.Options(
        duration=1, kill_min=1, kill_max=2, clients=1, shards=1, failpoints=True, min_ok_share=0.3,
        bin_dir=tmp_path / "bin", workdir=tmp_path / "work", keep=False, backend=backend)


def test_pg_s3_cluster_runs_the_coordinator_on_external_storage(tmp_path: Path) -> None:
    run = crashtest.Run(3, options(tmp_path, "pg-s3"))
    assert run.cluster is None, "made once PostgreSQL and moto have their ports"
    run.cluster = run.make_cluster(blob=external.s3_url("crash", 4567),
                                   consensus=external.postgres_url(5432, Path("/s/pw")))
    assert run.cluster.roles == ("txn-coordinator",)
    assert run.fault_targets() == ["txn-coordinator"], "postgres joins the targets once it runs"
    run.pg = object()  # type: ignore[assignment]  # only its presence matters here
    assert run.fault_targets() == ["txn-coordinator", "postgres"]
    assert run.cluster.storage_urls() == (
        "s3://crash?endpoint=http://127.0.0.1:4567",
        "postgres://txnwal@127.0.0.1:5432/txnwal?password_file=/s/pw")
    # Odd seeds compact, as in the cluster backend.
    assert run.compaction and "--no-compaction" not in run.roles["txn-coordinator"].extra_args


def test_cluster_backend_is_unchanged(tmp_path: Path) -> None:
    run = crashtest.Run(2, options(tmp_path, "cluster"))
    assert run.cluster is not None and run.cluster.roles == crashtest.clusterlib.ROLES
    assert run.fault_targets() == list(crashtest.clusterlib.ROLES)
    assert "--no-compaction" in run.roles["txn-coordinator"].extra_args
    blob, consensus = run.cluster.storage_urls()
    assert blob.startswith("s3://crash?endpoint=unix://") and consensus.startswith("consensus+unix://")


# ---- PostgreSQL and moto helpers ----------------------------------------------------------


def test_postgres_url_names_the_password_file_not_the_password() -> None:
    url = external.postgres_url(6543, Path("/run/x/pg-password"))
    assert url == "postgres://txnwal@127.0.0.1:6543/txnwal?password_file=/run/x/pg-password"
    assert ":" not in url.split("@")[0].removeprefix("postgres://"), "no user:password@"


def test_fast_crash_recovery_only_where_the_server_knows_the_setting() -> None:
    assert "recovery_init_sync_method=syncfs" in external.server_options(1, Path("/tmp/x"), major_version=15)
    assert "recovery_init_sync_method" not in external.server_options(1, Path("/tmp/x"), major_version=13)
    assert external.major_version_of(Path("/usr/lib/postgresql/15/bin")) == 15


def test_server_options_are_durable_and_loopback_only() -> None:
    opts = external.server_options(6543, Path("/tmp/crashpg-ab c"))
    for want in ("-c listen_addresses=127.0.0.1", "-p 6543", "-c fsync=on", "-c synchronous_commit=on"):
        assert want in opts
    assert "-k '/tmp/crashpg-ab c'" in opts, "the socket directory is quoted for pg_ctl's shell"


def test_setup_sql_creates_a_login_role_and_its_database() -> None:
    sql = external.setup_sql("abc_DEF-123")
    assert "CREATE ROLE txnwal LOGIN PASSWORD 'abc_DEF-123';" in sql
    assert "CREATE DATABASE txnwal OWNER txnwal;" in sql


@pytest.mark.parametrize("password", ["", "it's", "a b", "x;DROP"])
def test_setup_sql_refuses_passwords_that_need_quoting(password: str) -> None:
    with pytest.raises(ValueError):
        external.setup_sql(password)


@pytest.mark.parametrize("log, port", [
    (" * Running on http://127.0.0.1:40123\nPress CTRL+C to quit\n", 40123),
    ("WARNING: This is a development server.\n * Running on http://127.0.0.1:9000 (Press CTRL+C)\n", 9000),
    ("starting...\n", None),
    (" * Running on http://127.0.0.1:0\n", None),
    (" * Running on http://0.0.0.0:5000\n", None),
])
def test_moto_port_from_its_banner(log: str, port: int | None) -> None:
    assert external.moto_port(log) == port


def test_moto_keys_reach_the_coordinator_as_aws_variables() -> None:
    keys = external.S3Keys("AKIDX", "s3cr3t")
    assert keys.env() == {"AWS_ACCESS_KEY_ID": "AKIDX", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_REGION": "us-east-1"}


def test_free_loopback_port_is_bindable() -> None:
    import socket
    port = external.free_loopback_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_watchdog_runs_its_command_only_after_stop_is_skipped(tmp_path: Path) -> None:
    """Stopped normally, a watchdog never runs its command (it would act on our own,
    still-running process's behalf)."""
    marker = tmp_path / "ran"
    dog = external.start_watchdog(f"touch {marker}", tmp_path)
    assert dog.poll() is None
    external.stop_watchdog(dog)
    assert dog.poll() is not None and not marker.exists()


def test_password_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "pg-password"
    external.write_password_file(path, "first")
    assert path.read_text() == "first\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        external.write_password_file(path, "second")
    assert path.read_text() == "first\n"


def test_untraversable_ancestors_are_named(tmp_path: Path) -> None:
    if not external.is_root():
        assert external.untraversable_ancestors(tmp_path) == []
        return
    a = tmp_path / "a"
    b = a / "b"
    b.mkdir(parents=True)
    tmp_path.chmod(0o755)
    a.chmod(0o700)
    b.chmod(0o711)
    blocked = external.untraversable_ancestors(b)
    assert a in blocked and b not in blocked and tmp_path not in blocked
    a.chmod(0o711)
    assert a not in external.untraversable_ancestors(b)


# ---- recovery figures ---------------------------------------------------------------------


def history_line(kind: str, seconds: float) -> str:
    return json.dumps({"index": 0, "time": int(seconds * 1e9), "type": kind, "process": 1, "f": "txn", "value": []})


def test_ok_completion_times_come_from_ok_lines_only() -> None:
    lines = [history_line("invoke", 0.5), history_line("ok", 1.0), history_line("fail", 1.5),
             history_line("info", 2.0), "", history_line("ok", 3.25)]
    assert crashtest.ok_completion_seconds(lines) == [1.0, 3.25]


@pytest.mark.parametrize("event, role", [
    ("postgres started", "postgres"), ("start txn-coordinator", "txn-coordinator"),
    ("start consensus armed consensus.before-fsync=crash#5", "consensus"),
    ("pg_ctl stop -m immediate", None), ("kill -9 txn-coordinator", None), ("healed", None),
    ("txn-coordinator died (armed: -)", None),
])
def test_restarted_role(event: str, role: str | None) -> None:
    assert crashtest.restarted_role(event) == role


def test_recovery_delays_measure_to_the_next_ok() -> None:
    oks = [1.0, 2.0, 7.5]
    assert crashtest.recovery_delays(oks, [0.5, 2.0, 3.0, 8.0]) == [0.5, 5.5, 4.5, None]
    summary = crashtest.recovery_summary(crashtest.recovery_delays(oks, [0.5, 2.0, 3.0, 8.0]))
    assert summary == {"restarts": 4, "median": 4.5, "max": 5.5, "never": 1}
    assert crashtest.recovery_summary([]) == {"restarts": 0}


def test_longest_gap_counts_the_edges_of_the_load() -> None:
    assert crashtest.longest_gap([1.0, 2.0, 7.5], 8.0) == 5.5
    assert crashtest.longest_gap([3.0, 4.0], 5.0) == 3.0, "from the start of the load"
    assert crashtest.longest_gap([1.0], 9.0) == 8.0, "to its end"
    assert crashtest.longest_gap([], 4.0) == 4.0
    assert crashtest.longest_gap([1.0, 20.0], 4.0) == 3.0, "oks after the load (final reads) do not count"
