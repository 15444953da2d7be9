"""Tests of the local cluster launcher.

The process tests start the real servers from TXNWAL_BIN_DIR (tools/test.sh points it at
the debug build it just made; default .build/debug)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster as clusterlib  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("TXNWAL_BIN_DIR", REPO / ".build" / "debug"))


def config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.toml"
    p.write_text(text)
    return p


def test_default_config_loads() -> None:
    c = clusterlib.Config.load(clusterlib.DEFAULT_CONFIG)
    assert c.storage_transport == "unix"
    assert c.roles["txn-coordinator"].listen == "127.0.0.1:7300"
    assert c.roles["blob-store"].extra["bucket"] == "txnwal"


@pytest.mark.parametrize("text, message", [
    ("[cluster\n", "not valid TOML"),
    ("[clusterr]\n", "unknown sections"),
    ("[cluster]\nstorage_transport = \"udp\"\n", "storage_transport"),
    ("[cluster]\nstorage_transport = \"tcp\"\n[consensus]\nlisten = \"off\"\n", "needs [blob-store] listen"),
    ("[txn-coordinator]\nextra_args = \"--no-group-commit\"\n", "extra_args"),
])
def test_bad_configs_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(clusterlib.ClusterError, match=message.replace("[", r"\[")):
        clusterlib.Config.load(config(tmp_path, text))


def test_default_config_runs_every_role_on_its_own_storage() -> None:
    c = clusterlib.Config.load(clusterlib.DEFAULT_CONFIG)
    assert c.enabled == clusterlib.ROLES
    assert c.external_blob is None and c.external_consensus is None
    blob, consensus = clusterlib.Cluster(c).storage_urls()
    assert blob.startswith("s3://txnwal?endpoint=unix://") and consensus.startswith("consensus+unix://")


def test_external_storage_example_config_runs_only_the_coordinator() -> None:
    c = clusterlib.Config.load(clusterlib.REPO / "deploy" / "cluster-pg-s3.toml")
    assert c.enabled == ("txn-coordinator",)
    blob, consensus = clusterlib.Cluster(c).storage_urls()
    assert blob == "s3://txnwal?endpoint=http://127.0.0.1:9000"
    assert consensus.startswith("postgres://txnwal@127.0.0.1:5432/txnwal?password_file=")
    assert "blob" not in c.roles["txn-coordinator"].extra, "the URLs are not passed on as unknown settings"


def test_roles_are_kept_in_start_order(tmp_path: Path) -> None:
    c = clusterlib.Config.load(config(tmp_path, '[cluster]\nroles = ["consensus", "blob-store"]\n'))
    assert c.enabled == ("blob-store", "consensus")


EXTERNAL = '[txn-coordinator]\nblob = "s3://b?endpoint=http://127.0.0.1:9"\nconsensus = "postgres://u@127.0.0.1:1/d"\n'


@pytest.mark.parametrize("text, message", [
    ("[cluster]\nroles = []\n", "non-empty list"),
    ("[cluster]\nroles = \"txn-coordinator\"\n", "non-empty list"),
    ("[cluster]\nroles = [\"consensus\", \"consensus\"]\n", "distinct"),
    ("[cluster]\nroles = [\"postgres\"]\n", "unknown ['postgres']"),
    ("[cluster]\nroles = [\"consensus\", \"txn-coordinator\"]\n", "needs blob storage"),
    ("[cluster]\nroles = [\"blob-store\", \"txn-coordinator\"]\n", "needs consensus storage"),
    ("[cluster]\nroles = [\"blob-store\", \"txn-coordinator\"]\n" + EXTERNAL, "must not run its own blob-store"),
    (EXTERNAL, "must not run its own blob-store"),
    ("[cluster]\nroles = [\"txn-coordinator\"]\n[txn-coordinator]\nblob = 5\nconsensus = \"x\"\n", "blob must be a location URL"),
    ("[cluster]\nroles = [\"txn-coordinator\"]\n[txn-coordinator]\nblob = \"s3://b\"\nconsensus = \"\"\n",
     "consensus must be a location URL"),
])
def test_bad_role_sets_and_storage_urls_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(clusterlib.ClusterError, match=message.replace("[", r"\[")):
        clusterlib.Config.load(config(tmp_path, text))


def test_a_config_built_in_code_is_checked_too(tmp_path: Path) -> None:
    roles = {r: clusterlib.RoleConfig(listen=None, metrics=None) for r in clusterlib.ROLES}
    with pytest.raises(clusterlib.ClusterError, match="needs consensus storage"):
        clusterlib.Config(data_dir=tmp_path, bin_dir=tmp_path, storage_transport="unix", start_timeout=1,
                          stop_timeout=1, log_level="info", roles=roles, enabled=("txn-coordinator",),
                          external_blob="s3://b?endpoint=http://127.0.0.1:9")


def test_storage_servers_without_a_coordinator_are_fine(tmp_path: Path) -> None:
    c = clusterlib.Config.load(config(tmp_path, '[cluster]\nroles = ["blob-store"]\n'))
    assert c.enabled == ("blob-store",)


def test_tcp_transport_needs_addresses_only_for_the_servers_it_runs(tmp_path: Path) -> None:
    text = ('[cluster]\nstorage_transport = "tcp"\nroles = ["consensus", "txn-coordinator"]\n'
            '[consensus]\nlisten = "127.0.0.1:7200"\n[blob-store]\nlisten = "off"\n'
            '[txn-coordinator]\nblob = "s3://b?endpoint=http://127.0.0.1:9"\n')
    c = clusterlib.Config.load(config(tmp_path, text))
    blob, consensus = clusterlib.Cluster(c).storage_urls()
    assert blob == "s3://b?endpoint=http://127.0.0.1:9"
    assert consensus.startswith("consensus://127.0.0.1:7200?token_file=")


def test_coordinator_on_external_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the coordinator's secrets are made, its command names the external URLs, and
    its S3 keys are the environment's (there is no blob-store whose keys it could use)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "txn-coordinator").write_text("#!/bin/sh\n")
    (bin_dir / "txn-coordinator").chmod(0o755)
    text = '[cluster]\nroles = ["txn-coordinator"]\n' + EXTERNAL
    c = clusterlib.Cluster(clusterlib.Config.load(config(tmp_path, text), data_dir=str(tmp_path / "c"),
                                                  bin_dir=str(bin_dir)))
    assert c.roles == ("txn-coordinator",)
    c.prepare()
    assert {p.name for p in c.secrets_dir.iterdir()} == {"coordinator.token"}
    assert not c.data_path("consensus").exists() and not c.data_path("blob-store").exists()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMTHEENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-the-env")
    monkeypatch.setenv("TXNWAL_FAILPOINTS", "coordinator.before-reply=crash")
    argv, env = c.command("txn-coordinator")
    assert argv[argv.index("--blob") + 1] == "s3://b?endpoint=http://127.0.0.1:9"
    assert argv[argv.index("--consensus") + 1] == "postgres://u@127.0.0.1:1/d"
    assert env["AWS_ACCESS_KEY_ID"] == "AKIDFROMTHEENV"
    assert env["AWS_SECRET_ACCESS_KEY"] == "secret-from-the-env"
    assert "TXNWAL_FAILPOINTS" not in env, "fault switches still never come from the shell"
    with pytest.raises(clusterlib.ClusterError, match="does not run consensus"):
        c.start("consensus")
    assert c.down() == ["txn-coordinator: not running"], "down covers only the roles it runs"
    assert list(c.status()) == ["txn-coordinator"]


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(clusterlib.ClusterError, match="cannot read"):
        clusterlib.Config.load(tmp_path / "nope.toml")


def test_secrets_are_private_and_stable(tmp_path: Path) -> None:
    c = clusterlib.Cluster(clusterlib.Config.load(clusterlib.DEFAULT_CONFIG, data_dir=str(tmp_path / "c")))
    c.prepare()
    first = {p.name: p.read_text() for p in c.secrets_dir.iterdir()}
    assert set(first) == {"consensus.token", "coordinator.token", "blob-store.credentials"}
    for p in c.secrets_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(c.secrets_dir.stat().st_mode) == 0o700
    c.prepare()
    assert {p.name: p.read_text() for p in c.secrets_dir.iterdir()} == first, "prepare never rewrites secrets"
    key_id, secret = c.s3_keys()
    assert key_id.startswith("TXNWAL") and len(secret) >= 30


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    """A pid file whose process has a different start time names someone else: `down`
    and `kill` must leave that process alone."""
    c = clusterlib.Cluster(clusterlib.Config.load(clusterlib.DEFAULT_CONFIG, data_dir=str(tmp_path / "c")))
    c.prepare()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        ticks = clusterlib.process_start_ticks(stranger.pid)
        assert ticks is not None
        c.pid_path("consensus").write_text(f'{{"pid": {stranger.pid}, "start_ticks": {ticks - 1}}}\n')
        assert c.pid("consensus") is None
        assert "not running" in c.kill("consensus")
        c.down()
        assert stranger.poll() is None, "the launcher signalled a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    for tool in clusterlib.ROLES:
        assert os.access(BIN_DIR / tool, os.X_OK), f"build the servers first: {BIN_DIR / tool}"
    cfg = clusterlib.Config.load(clusterlib.DEFAULT_CONFIG, data_dir=str(tmp_path / "c"), bin_dir=str(BIN_DIR))
    for r in cfg.roles.values():  # sockets only: no fixed ports to collide with
        r.listen, r.metrics = None, None
    c = clusterlib.Cluster(cfg)
    try:
        assert all("started" in line for line in c.up())
        pids = {r: c.pid(r) for r in clusterlib.ROLES}
        assert all(pids.values())
        assert all("already running" in line for line in c.up()), "a second up starts nothing"
        assert {r: c.pid(r) for r in clusterlib.ROLES} == pids
        st = c.status()
        assert all(s["healthy"] for s in st.values())
        for role in clusterlib.ROLES:
            assert stat.S_IMODE(c.socket_path(role).stat().st_mode) == 0o600

        # The coordinator answers through the cluster's socket and token.
        env = {**os.environ}
        status = subprocess.run([str(BIN_DIR / "txnctl"), *c.client_args(), "status", "--json"],
                                capture_output=True, text=True, env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        assert '"upper"' in status.stdout

        # kill -9 one server; status shows it; start brings it back under a new pid.
        victim = pids["consensus"]
        assert "SIGKILL" in c.kill("consensus")
        assert c.pid("consensus") is None
        with pytest.raises(ProcessLookupError):
            os.kill(victim, 0)
        assert c.status()["consensus"]["running"] is False
        c.start("consensus")
        assert c.pid("consensus") not in (None, victim)
        log = c.log_path("consensus").read_text()
        assert log.count("=== cluster.py: starting consensus") == 2, "the log is appended across restarts"
    finally:
        c.down()
    for role in clusterlib.ROLES:
        assert c.pid(role) is None
        assert not c.pid_path(role).exists()
    assert all("not running" in line for line in c.down()), "down twice is fine"


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    cfg = clusterlib.Config.load(clusterlib.DEFAULT_CONFIG, data_dir=str(tmp_path / "c"), bin_dir=str(BIN_DIR))
    for r in cfg.roles.values():
        r.listen, r.metrics = None, None
    cfg.roles["consensus"].extra_args = ["--segment-size-mib", "not-a-number"]
    c = clusterlib.Cluster(cfg)
    try:
        with pytest.raises(clusterlib.ClusterError, match="exited with status"):
            c.start("consensus")
        assert c.pid("consensus") is None
    finally:
        c.down()
