#!/usr/bin/env python3
"""Local cluster launcher: blob-store, consensus and txn-coordinator on one machine.

    tools/cluster/cluster.py up                 start whatever is not running (idempotent)
    tools/cluster/cluster.py status [--json]    each server: pid, addresses, health
    tools/cluster/cluster.py kill ROLE|all      SIGKILL (or --signal TERM), wait until gone
    tools/cluster/cluster.py start ROLE         start one server (after a kill)
    tools/cluster/cluster.py restart ROLE       stop (drain; --hard: kill -9) and start again
    tools/cluster/cluster.py logs ROLE [-n N] [-f]
    tools/cluster/cluster.py env                shell lines that point txnctl/loadgen at it
    tools/cluster/cluster.py down               stop everything this cluster started

The configuration is a TOML file (default deploy/cluster.toml). Everything the cluster
writes lives under its data directory:

    <data_dir>/<role>/            the server's data
    <data_dir>/run/<role>.sock    its Unix socket (0600)
    <data_dir>/run/<role>.pid     {"pid", "start_ticks", "argv"}: which process we started
    <data_dir>/run/<role>.ready   the server's ready file (bound addresses)
    <data_dir>/logs/<role>.log    its stderr/stdout, appended across restarts
    <data_dir>/secrets/           generated tokens and S3 keys, 0600 in a 0700 directory

A pid file names a process by pid *and* its start time (from /proc), so `down` and
`kill` never signal an unrelated process that reused the pid. The module is also the
crash test's library (tools/crashtest).

The coordinator may also keep its data in storage this cluster does not run: with
`[txn-coordinator] blob = "s3://..."` and/or `consensus = "postgres://..."` set, list
only the roles to run in `[cluster] roles` (deploy/cluster-pg-s3.toml is an example).
The S3 keys then come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY),
the database password from the URL's password_file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "deploy" / "cluster.toml"
ROLES = ("blob-store", "consensus", "txn-coordinator")
# Storage first: the coordinator recovers from it when it starts.
START_ORDER = ROLES
STOP_ORDER = tuple(reversed(ROLES))


class ClusterError(Exception):
    """A launcher failure with a message meant for the operator."""


@dataclass
class RoleConfig:
    listen: str | None
    metrics: str | None
    extra_args: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class Config:
    data_dir: Path
    bin_dir: Path
    storage_transport: str
    start_timeout: float
    stop_timeout: float
    log_level: str
    roles: dict[str, RoleConfig]
    # The roles this cluster runs, in START_ORDER (default: all three).
    enabled: tuple[str, ...] = ROLES
    # Storage the coordinator uses instead of this cluster's blob-store / consensus
    # server (whose role is then not enabled): location URLs, or None.
    external_blob: str | None = None
    external_consensus: str | None = None

    def __post_init__(self) -> None:
        self.enabled = tuple(r for r in START_ORDER if r in self.enabled)
        problem = external_storage_problem(self.enabled, self.external_blob, self.external_consensus)
        if problem:
            raise ClusterError(problem)

    @staticmethod
    def load(path: Path, data_dir: str | None = None, bin_dir: str | None = None) -> "Config":
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise ClusterError(f"cannot read the cluster config {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ClusterError(f"{path}: not valid TOML: {e}") from None
        c = raw.get("cluster", {})
        unknown = set(raw) - {"cluster", *ROLES}
        if unknown:
            raise ClusterError(f"{path}: unknown sections {sorted(unknown)} (expected cluster, {', '.join(ROLES)})")

        def resolve(p: str) -> Path:
            q = Path(p).expanduser()
            return q if q.is_absolute() else (REPO / q)

        transport = c.get("storage_transport", "unix")
        if transport not in ("unix", "tcp"):
            raise ClusterError(f"{path}: storage_transport must be \"unix\" or \"tcp\", not {transport!r}")
        enabled = c.get("roles", list(ROLES))
        if (not isinstance(enabled, list) or not enabled
                or not all(isinstance(r, str) for r in enabled) or len(set(enabled)) != len(enabled)):
            raise ClusterError(f"{path}: [cluster] roles must be a non-empty list of distinct role names")
        if set(enabled) - set(ROLES):
            raise ClusterError(f"{path}: [cluster] roles: unknown {sorted(set(enabled) - set(ROLES))} "
                               f"(roles are {', '.join(ROLES)})")
        roles = {}
        external: dict[str, str | None] = {}
        for role in ROLES:
            r = dict(raw.get(role, {}))
            listen = r.pop("listen", None)
            metrics = r.pop("metrics", None)
            extra_args = r.pop("extra_args", [])
            if not isinstance(extra_args, list) or not all(isinstance(a, str) for a in extra_args):
                raise ClusterError(f"{path}: [{role}] extra_args must be a list of strings")
            if role == "txn-coordinator":
                for kind in ("blob", "consensus"):
                    url = r.pop(kind, None)
                    if url is not None and (not isinstance(url, str) or not url):
                        raise ClusterError(f"{path}: [txn-coordinator] {kind} must be a location URL (a string)")
                    external[kind] = url
            roles[role] = RoleConfig(
                listen=None if listen in (None, "off") else str(listen),
                metrics=None if metrics in (None, "off") else str(metrics),
                extra_args=extra_args, extra=r)
        if transport == "tcp":
            for role in ("blob-store", "consensus"):
                if role in enabled and roles[role].listen is None:
                    raise ClusterError(f"{path}: storage_transport = \"tcp\" needs [{role}] listen")
        problem = external_storage_problem(tuple(enabled), external["blob"], external["consensus"])
        if problem:
            raise ClusterError(f"{path}: {problem}")
        return Config(
            data_dir=resolve(data_dir or os.environ.get("TXNWAL_CLUSTER_DIR") or c.get("data_dir", ".cluster")),
            bin_dir=resolve(bin_dir or os.environ.get("TXNWAL_BIN_DIR") or c.get("bin_dir", ".build/release")),
            storage_transport=transport,
            start_timeout=float(c.get("start_timeout", 60)),
            stop_timeout=float(c.get("stop_timeout", 30)),
            log_level=str(c.get("log_level", "info")),
            roles=roles,
            enabled=tuple(enabled),
            external_blob=external["blob"],
            external_consensus=external["consensus"],
        )


def external_storage_problem(enabled: tuple[str, ...], blob: str | None, consensus: str | None) -> str | None:
    """Why a role set and the coordinator's external storage URLs do not fit together.

    The coordinator needs each kind of storage from exactly one place: the cluster's own
    server for it, or an external URL. Storage servers without a coordinator are fine."""
    if not enabled:
        return "[cluster] roles is empty: nothing to run"
    for kind, server, url in (("blob", "blob-store", blob), ("consensus", "consensus", consensus)):
        if url is not None and server in enabled:
            return (f"[txn-coordinator] {kind} is set, so the cluster must not run its own {server}: "
                    f"leave {server!r} out of [cluster] roles")
        if url is None and server not in enabled and "txn-coordinator" in enabled:
            return (f"the coordinator needs {kind} storage: put {server!r} in [cluster] roles "
                    f"or set [txn-coordinator] {kind} to a location URL")
    return None


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone.

    A zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is parenthesised and may contain spaces.
    rest = stat[stat.rfind(")") + 2:].split()
    if not rest or rest[0] in ("Z", "X"):
        return None
    return int(rest[19])  # field 22 overall


def write_private(path: Path, text: str) -> None:
    """Creates `path` with mode 0600 (never wider, not even briefly) unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Cluster:
    def __init__(self, config: Config):
        self.config = config
        self.dir = config.data_dir
        self.run_dir = self.dir / "run"
        self.log_dir = self.dir / "logs"
        self.secrets_dir = self.dir / "secrets"
        # Processes this Python process started, so they can be reaped.
        self._children: dict[str, subprocess.Popen] = {}

    # ---- paths and secrets -------------------------------------------------------------

    def socket_path(self, role: str) -> Path:
        return self.run_dir / f"{role}.sock"

    def pid_path(self, role: str) -> Path:
        return self.run_dir / f"{role}.pid"

    def ready_path(self, role: str) -> Path:
        return self.run_dir / f"{role}.ready"

    def log_path(self, role: str) -> Path:
        return self.log_dir / f"{role}.log"

    def data_path(self, role: str) -> Path:
        return self.dir / role

    @property
    def consensus_token(self) -> Path:
        return self.secrets_dir / "consensus.token"

    @property
    def coordinator_token(self) -> Path:
        return self.secrets_dir / "coordinator.token"

    @property
    def blob_credentials(self) -> Path:
        return self.secrets_dir / "blob-store.credentials"

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles this cluster runs, in start order."""
        return self.config.enabled

    def prepare(self) -> None:
        """Creates the directories and, once, the secrets (those the enabled roles use)."""
        for d in (self.dir, self.run_dir, self.log_dir, *(self.data_path(r) for r in self.roles)):
            d.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        if "consensus" in self.roles:
            write_private(self.consensus_token, secrets.token_hex(32) + "\n")
        if "txn-coordinator" in self.roles:
            write_private(self.coordinator_token, secrets.token_hex(32) + "\n")
        if "blob-store" in self.roles:
            write_private(
                self.blob_credentials,
                f"# access key id, secret access key (generated by tools/cluster/cluster.py)\n"
                f"TXNWAL{secrets.token_hex(7).upper()} {secrets.token_urlsafe(30)}\n")

    def s3_keys(self) -> tuple[str, str]:
        for line in self.blob_credentials.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key_id, secret = line.split()
                return key_id, secret
        raise ClusterError(f"{self.blob_credentials} holds no access key")

    # ---- commands ----------------------------------------------------------------------

    def binary(self, role: str) -> Path:
        b = self.config.bin_dir / role
        if not os.access(b, os.X_OK):
            raise ClusterError(
                f"{b} is missing: build the servers first (swift build -c release), "
                f"or point --bin-dir / TXNWAL_BIN_DIR at them")
        return b

    def storage_urls(self) -> tuple[str, str]:
        """The blob and consensus location URLs the coordinator is given."""
        bucket = self.config.roles["blob-store"].extra.get("bucket", "txnwal")
        if self.config.storage_transport == "unix":
            blob = f"s3://{bucket}?endpoint=unix://{self.socket_path('blob-store')}"
            consensus = f"consensus+unix://{self.socket_path('consensus')}?token_file={self.consensus_token}"
        else:
            blob = f"s3://{bucket}?endpoint=http://{self.config.roles['blob-store'].listen}"
            consensus = f"consensus://{self.config.roles['consensus'].listen}?token_file={self.consensus_token}"
        return self.config.external_blob or blob, self.config.external_consensus or consensus

    def command(self, role: str) -> tuple[list[str], dict[str, str]]:
        rc = self.config.roles[role]
        argv = [str(self.binary(role))]
        # Fault switches reach a server only when the caller asks for them (extra_env of
        # `start`), never by accident from the operator's shell.
        env = {k: v for k, v in os.environ.items() if k not in ("TXNWAL_FAILPOINTS", "TXNWAL_TEST_BUGS")}
        if role == "blob-store":
            bucket = rc.extra.get("bucket", "txnwal")
            argv += ["--data-dir", str(self.data_path(role)), "--bucket", bucket,
                     "--credentials-file", str(self.blob_credentials)]
        elif role == "consensus":
            argv += ["--data-dir", str(self.data_path(role)), "--token-file", str(self.consensus_token)]
        else:
            blob, consensus = self.storage_urls()
            argv += ["--blob", blob, "--consensus", consensus, "--token-file", str(self.coordinator_token)]
            if "txns_shard" in rc.extra:
                argv += ["--txns-shard", str(rc.extra["txns_shard"])]
            if self.config.external_blob is None:
                # Our blob-store's keys; for external S3 the environment's (or extra_env's).
                key_id, secret = self.s3_keys()
                env["AWS_ACCESS_KEY_ID"] = key_id
                env["AWS_SECRET_ACCESS_KEY"] = secret
        argv += ["--listen", f"unix:{self.socket_path(role)}"]
        if rc.listen:
            argv += ["--listen", rc.listen]
        argv += ["--metrics-listen", rc.metrics or "off"]
        argv += ["--log-level", self.config.log_level, "--ready-file", str(self.ready_path(role))]
        argv += rc.extra_args
        return argv, env

    # ---- process state -----------------------------------------------------------------

    def pid(self, role: str) -> int | None:
        """The pid of the running server this cluster started for `role`, if any."""
        try:
            record = json.loads(self.pid_path(role).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        child = self._children.get(role)
        if child is not None and child.poll() is not None:
            return None
        pid, ticks = record.get("pid"), record.get("start_ticks")
        if not isinstance(pid, int) or process_start_ticks(pid) != ticks:
            return None
        return pid

    def ready_addresses(self, role: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        try:
            for line in self.ready_path(role).read_text().splitlines():
                name, _, address = line.partition(" ")
                if address:
                    out.setdefault(name, []).append(address)
        except FileNotFoundError:
            pass
        return out

    def healthy(self, role: str) -> bool:
        """Running, ready, and accepting connections on its Unix socket."""
        if self.pid(role) is None or not self.ready_path(role).exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect(str(self.socket_path(role)))
                return True
            except OSError:
                return False

    def _tail(self, role: str, lines: int = 15) -> str:
        try:
            text = self.log_path(role).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self, role: str, extra_env: dict[str, str] | None = None) -> str:
        """Starts `role` unless it is running; waits until it is healthy."""
        if role not in ROLES:
            raise ClusterError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if role not in self.roles:
            raise ClusterError(f"this cluster does not run {role} (its roles: {', '.join(self.roles)})")
        if self.pid(role) is not None:
            return f"{role}: already running (pid {self.pid(role)})"
        self.prepare()
        argv, env = self.command(role)
        env.update(extra_env or {})
        self.ready_path(role).unlink(missing_ok=True)
        with open(self.log_path(role), "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"=== cluster.py: starting {role} at {stamp}: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.data_path(role), start_new_session=True, close_fds=True)
        self._children[role] = proc
        ticks = None
        for _ in range(100):
            ticks = process_start_ticks(proc.pid)
            if ticks is not None or proc.poll() is not None:
                break
            time.sleep(0.01)
        write_atomically(self.pid_path(role), json.dumps({"pid": proc.pid, "start_ticks": ticks, "argv": argv}) + "\n")
        deadline = time.monotonic() + self.config.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_path(role).unlink(missing_ok=True)
                raise ClusterError(
                    f"{role} exited with status {proc.returncode} while starting; last log lines "
                    f"({self.log_path(role)}):\n{self._tail(role)}")
            if self.healthy(role):
                return f"{role}: started (pid {proc.pid})"
            time.sleep(0.05)
        self._signal_and_wait(role, proc.pid, signal.SIGKILL, 10)
        raise ClusterError(
            f"{role} did not become ready within {self.config.start_timeout:.0f} s; last log lines:\n{self._tail(role)}")

    def _wait_gone(self, role: str, pid: int, ticks: int | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        child = self._children.get(role)
        while time.monotonic() < deadline:
            if child is not None and child.pid == pid:
                if child.poll() is not None:
                    return True
            elif process_start_ticks(pid) != ticks:
                return True
            time.sleep(0.02)
        return False

    def _signal_and_wait(self, role: str, pid: int, sig: int, timeout: float) -> bool:
        ticks = process_start_ticks(pid)
        if ticks is None:
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        return self._wait_gone(role, pid, ticks, timeout)

    def stop(self, role: str) -> str:
        """SIGTERM (the server drains and exits), SIGKILL after stop_timeout."""
        pid = self.pid(role)
        if pid is None:
            self.pid_path(role).unlink(missing_ok=True)
            return f"{role}: not running"
        if self._signal_and_wait(role, pid, signal.SIGTERM, self.config.stop_timeout):
            outcome = "stopped"
        else:
            self._signal_and_wait(role, pid, signal.SIGKILL, 10)
            outcome = f"did not drain within {self.config.stop_timeout:.0f} s; killed"
        self.pid_path(role).unlink(missing_ok=True)
        self._children.pop(role, None)
        return f"{role}: {outcome} (pid {pid})"

    def kill(self, role: str, sig: int = signal.SIGKILL) -> str:
        pid = self.pid(role)
        if pid is None:
            return f"{role}: not running"
        if not self._signal_and_wait(role, pid, sig, 30):
            raise ClusterError(f"{role} (pid {pid}) survived signal {sig} for 30 s")
        self.pid_path(role).unlink(missing_ok=True)
        self._children.pop(role, None)
        return f"{role}: killed with signal {signal.Signals(sig).name} (pid {pid})"

    def up(self, extra_env: dict[str, dict[str, str]] | None = None) -> list[str]:
        self.prepare()
        return [self.start(role, (extra_env or {}).get(role)) for role in self.roles]

    def down(self) -> list[str]:
        return [self.stop(role) for role in STOP_ORDER if role in self.roles]

    def status(self) -> dict[str, dict]:
        out = {}
        for role in self.roles:
            pid = self.pid(role)
            out[role] = {
                "running": pid is not None,
                "pid": pid,
                "healthy": self.healthy(role) if pid is not None else False,
                "addresses": self.ready_addresses(role) if pid is not None else {},
                "socket": str(self.socket_path(role)),
                "log": str(self.log_path(role)),
            }
        return out

    def client_args(self) -> list[str]:
        """Flags that point txnctl or loadgen at this cluster's coordinator."""
        return ["--coordinator", f"unix:{self.socket_path('txn-coordinator')}",
                "--token-file", str(self.coordinator_token)]


# ---- command line ------------------------------------------------------------------------


def role_arg(value: str) -> str:
    if value not in ROLES:
        raise argparse.ArgumentTypeError(f"unknown role {value!r}: one of {', '.join(ROLES)}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="cluster.py", description="Start, stop and inspect the local swift-txn-wal cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Roles: " + ", ".join(ROLES) + ". Configuration: deploy/cluster.toml (see deploy/README.md).")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="cluster TOML file (default: %(default)s)")
    p.add_argument("--data-dir", help="override [cluster] data_dir (also TXNWAL_CLUSTER_DIR)")
    p.add_argument("--bin-dir", help="override [cluster] bin_dir (also TXNWAL_BIN_DIR)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("up", help="start every server that is not running, wait until healthy")
    sub.add_parser("down", help="stop every server this cluster started (SIGTERM, then SIGKILL)")
    s = sub.add_parser("status", help="show each server's pid, health and addresses")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("start", help="start one server")
    s.add_argument("role", type=role_arg)
    s = sub.add_parser("stop", help="stop one server (drain)")
    s.add_argument("role", type=role_arg)
    s = sub.add_parser("kill", help="signal one server (or all), SIGKILL by default, and wait until gone")
    s.add_argument("role", type=lambda v: v if v == "all" else role_arg(v))
    s.add_argument("--signal", default="KILL", help="signal name, e.g. KILL, TERM (default: KILL)")
    s = sub.add_parser("restart", help="stop one server and start it again")
    s.add_argument("role", type=role_arg)
    s.add_argument("--hard", action="store_true", help="kill -9 instead of draining")
    s = sub.add_parser("logs", help="print a server's log")
    s.add_argument("role", type=role_arg)
    s.add_argument("-n", type=int, default=50, help="last N lines (default: 50; 0: all)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing as it grows")
    sub.add_parser("env", help="print shell exports for txnctl and loadgen")
    args = p.parse_args(argv)

    try:
        cluster = Cluster(Config.load(args.config, args.data_dir, args.bin_dir))
        if args.cmd == "up":
            for line in cluster.up():
                print(line)
            if "txn-coordinator" in cluster.roles:
                print(f"coordinator: unix:{cluster.socket_path('txn-coordinator')} "
                      f"token {cluster.coordinator_token}")
        elif args.cmd == "down":
            for line in cluster.down():
                print(line)
        elif args.cmd == "status":
            st = cluster.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                for role, s in st.items():
                    if not s["running"]:
                        print(f"{role:16} stopped")
                        continue
                    addrs = ", ".join(f"{n}={a}" for n, al in s["addresses"].items() for a in al)
                    health = "healthy" if s["healthy"] else "NOT HEALTHY"
                    print(f"{role:16} pid {s['pid']:<8} {health:12} {addrs}")
            return 0 if all(s["healthy"] for s in st.values()) else 1
        elif args.cmd == "start":
            print(cluster.start(args.role))
        elif args.cmd == "stop":
            print(cluster.stop(args.role))
        elif args.cmd == "kill":
            name = args.signal.upper().removeprefix("SIG")
            try:
                sig = signal.Signals["SIG" + name]
            except KeyError:
                raise ClusterError(f"unknown signal {args.signal!r}") from None
            for role in ([r for r in STOP_ORDER if r in cluster.roles] if args.role == "all" else (args.role,)):
                print(cluster.kill(role, sig))
        elif args.cmd == "restart":
            print(cluster.kill(args.role) if args.hard else cluster.stop(args.role))
            print(cluster.start(args.role))
        elif args.cmd == "logs":
            path = cluster.log_path(args.role)
            if not path.exists():
                raise ClusterError(f"no log yet at {path}")
            tail = ["tail", "-n", "+1" if args.n == 0 else str(args.n)] + (["-F"] if args.follow else []) + [str(path)]
            return subprocess.call(tail)
        elif args.cmd == "env":
            print(f"export TXNCTL_COORDINATOR=unix:{cluster.socket_path('txn-coordinator')}")
            print(f"export TXNCTL_TOKEN_FILE={cluster.coordinator_token}")
        return 0
    except ClusterError as e:
        print(f"cluster.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
