"""Storage the crash test starts outside the cluster: PostgreSQL 15 and moto's S3 server.

Used by `crashtest.py --backend pg-s3`, where the coordinator keeps consensus in a
PostgreSQL database and blobs in an S3 bucket. Per seed the crash test starts

  * a fresh PostgreSQL from the system's binaries: initdb into the seed's directory, a
    free loopback port, fsync and synchronous_commit on, a login role with a generated
    password (set through psql's stdin, kept in a 0600 file that the location URL names
    as password_file; never on a command line), its socket in a private directory;
  * moto's S3 server on a port it picks itself, and a bucket created with a signed
    request (boto3) under generated keys that reach the coordinator as AWS_* variables.

PostgreSQL refuses to run as root: when this process is root, its directories belong to
the `postgres` account and its programs run through `runuser`. Each service also gets a
watchdog, a shell that stops the service once this process is gone, so a crash test that
is killed outright leaves nothing running.

The pure helpers (URLs, server options, parsing moto's banner) are tested in
test_crashtest.py; the classes are thin shells around the programs.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_ACCOUNT = "postgres"
DATABASE = "txnwal"
ROLE = "txnwal"
SETUP_HINT = "tools/setup.sh installs PostgreSQL 15 and the Python packages of tools/requirements.txt"


class ExternalError(Exception):
    """A service that would not start, stop or answer, with a message for the operator."""


# ---- pure helpers ------------------------------------------------------------------------


def postgres_url(port: int, password_file: Path, role: str = ROLE, database: str = DATABASE) -> str:
    """The consensus location URL of `database` on a loopback server, password from a file."""
    return f"postgres://{role}@127.0.0.1:{port}/{database}?password_file={password_file}"


def s3_url(bucket: str, port: int) -> str:
    """The blob location URL of `bucket` on a loopback S3 server (path-style addressing)."""
    return f"s3://{bucket}?endpoint=http://127.0.0.1:{port}"


def server_options(port: int, socket_dir: Path, max_connections: int = 100, major_version: int = 15) -> str:
    """`pg_ctl -o` options: loopback TCP on `port`, the socket in `socket_dir`, durable commits."""
    options = [
        "-c listen_addresses=127.0.0.1", f"-p {port}", f"-k {shlex.quote(str(socket_dir))}",
        # The defaults, stated: an acknowledged commit is on disk.
        "-c fsync=on", "-c synchronous_commit=on", "-c full_page_writes=on",
        f"-c max_connections={max_connections}",
    ]
    if major_version >= 14:
        # After a crash PostgreSQL flushes its whole data directory before replaying the
        # log; one syncfs instead of an fsync per file cuts that from seconds to a blink.
        # (The setting exists from PostgreSQL 14 on; older servers refuse to start with it.)
        options.append("-c recovery_init_sync_method=syncfs")
    return " ".join(options)


def major_version_of(bin_dir: Path) -> int:
    """The major version of the PostgreSQL in `bin_dir`, from Debian's
    /usr/lib/postgresql/<major>/bin layout, else from `postgres --version`; 0 if unknown."""
    if bin_dir.parent.name.isdigit():
        return int(bin_dir.parent.name)
    try:
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else 0


def setup_sql(password: str, role: str = ROLE, database: str = DATABASE) -> str:
    """The statements that create the login role and its database (fed to psql's stdin)."""
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", password):
        raise ValueError("the generated password must be plain letters, digits, '-' and '_'")
    return (f"CREATE ROLE {role} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {database} OWNER {role};\n")


def write_password_file(path: Path, password: str) -> None:
    """Creates `path` with mode 0600 from the start (FileExistsError if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")


_MOTO_BANNER = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")


def moto_port(log_text: str) -> int | None:
    """The port of moto's (Werkzeug's) "Running on http://127.0.0.1:PORT" line, if printed."""
    m = _MOTO_BANNER.search(log_text)
    if m is None:
        return None
    port = int(m.group(1))
    return port if 0 < port < 65536 else None


# ---- processes ---------------------------------------------------------------------------


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root() -> bool:
    return os.geteuid() == 0


def _pid_alive(pid: int) -> bool:
    """Whether `pid` names a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    rest = stat[stat.rfind(")") + 2:].split()
    return bool(rest) and rest[0] not in ("Z", "X")


def start_watchdog(command: str, workdir: Path) -> subprocess.Popen:
    """A shell that runs `command` once this process is gone (never earlier: stop it with
    `stop_watchdog` when cleaning up normally). Its own session, so Ctrl-C spares it."""
    script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done\n{command}\n"
    return subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir, start_new_session=True)


def stop_watchdog(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def untraversable_ancestors(path: Path) -> list[Path]:
    """The directories above `path` (and `path` itself) that the server account could not
    pass through: none lacks search permission for others. Empty when not root (the
    server then runs as this user)."""
    if not is_root():
        return []
    blocked = []
    for d in (path, *path.parents):
        if not os.stat(d).st_mode & 0o001:
            blocked.append(d)
    return blocked


def find_postgres_bin() -> Path:
    """The directory holding initdb, pg_ctl, postgres and psql (PostgreSQL 15 preferred)."""
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        others = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name))
        candidates += [p / "bin" for p in others]
    for d in candidates:
        if all(os.access(d / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres", "psql")):
            return d
    raise ExternalError(f"PostgreSQL's programs are not installed (looked in {', '.join(map(str, candidates))}); "
                        f"{SETUP_HINT}")


class Postgres:
    """A throwaway PostgreSQL server in `root` (its data in root/data, its log root/server.log)."""

    def __init__(self, root: Path, secrets_dir: Path):
        self.bin = find_postgres_bin()
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.password_file = secrets_dir / "pg-password"
        self.socket_dir: Path | None = None
        self.port = 0
        self.options = ""
        self.watchdog: subprocess.Popen | None = None
        self._account = None
        if is_root():  # PostgreSQL refuses to run as root: its own account runs it
            try:
                self._account = pwd.getpwnam(SERVER_ACCOUNT)
            except KeyError:
                raise ExternalError(f"running as root, but there is no {SERVER_ACCOUNT} account to run "
                                    f"PostgreSQL as; {SETUP_HINT}") from None

    @property
    def url(self) -> str:
        return postgres_url(self.port, self.password_file)

    def _as_server(self, program: str, args: list[str]) -> list[str]:
        argv = [str(self.bin / program), *args]
        if not self._account:
            return argv
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", SERVER_ACCOUNT, "--", *argv]

    def _own(self, path: Path) -> None:
        if self._account:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _run(self, argv: list[str], what: str, timeout: float = 180, stdin_text: str | None = None) -> str:
        """Runs a program to completion; its output goes to a file, not a pipe, since the
        server pg_ctl leaves behind would hold a pipe open."""
        with tempfile.TemporaryFile() as out:
            try:
                r = subprocess.run(argv, input=stdin_text.encode() if stdin_text is not None else None,
                                   stdin=None if stdin_text is not None else subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True)
            except subprocess.TimeoutExpired:
                raise ExternalError(f"{what} did not finish within {timeout:.0f} s") from None
            out.seek(0)
            text = out.read().decode(errors="replace")
        if r.returncode != 0:
            tail = "\n    ".join(text.strip().splitlines()[-12:])
            raise ExternalError(f"{what} failed (exit status {r.returncode}):\n    {tail}")
        return text

    def create(self) -> None:
        """initdb, start on a free port, create the role (with a password) and its database."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=False)
        self._own(self.root)
        # Socket paths are limited to about 100 bytes: a short private directory in /tmp.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="crashpg-", dir="/tmp"))
        os.chmod(self.socket_dir, 0o700)
        self._own(self.socket_dir)
        self.watchdog = start_watchdog(
            f"{shlex.join(self._as_server('pg_ctl', ['-D', str(self.data), '-m', 'immediate', 'stop']))} "
            f">/dev/null 2>&1; rm -rf {shlex.quote(str(self.socket_dir))}", self.root)
        # --no-sync only skips flushing initdb's own files; the server runs with fsync on.
        self._run(self._as_server("initdb", [
            "-D", str(self.data), "-U", SERVER_ACCOUNT, "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync"]), "initdb")
        failures = []
        for _ in range(4):  # the free port may be taken before the server binds it
            self.port = free_loopback_port()
            self.options = server_options(self.port, self.socket_dir, major_version=major_version_of(self.bin))
            try:
                self.start()
                break
            except ExternalError as e:
                failures.append(str(e))
        else:
            raise ExternalError("PostgreSQL did not start:\n" + "\n".join(failures))
        password = secrets.token_urlsafe(24).replace("-", "_")
        write_password_file(self.password_file, password)
        # The password reaches the server through psql's stdin, never a command line.
        self.psql(setup_sql(password))

    def psql(self, sql: str) -> str:
        """Runs `sql` (from stdin) as the superuser over the Unix socket."""
        return self._run([str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                          "-p", str(self.port), "-U", SERVER_ACCOUNT, "-d", "postgres", "-f", "-"],
                         "psql", timeout=60, stdin_text=sql)

    def start(self) -> None:
        """Starts the server (after an immediate stop it first recovers from its WAL)."""
        self._run(self._as_server("pg_ctl", ["-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
                                              "-o", self.options, "start"]),
                  f"pg_ctl start (server log: {self.log})")

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m immediate` (every server process killed, as a crash would) or fast."""
        self._run(self._as_server("pg_ctl", ["-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]),
                  f"pg_ctl stop -m {mode}")

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def close(self) -> list[str]:
        """Stops the server if it runs (fast, then immediate) and removes its socket directory."""
        notes = []
        if self.running():
            try:
                self.stop("fast")
                notes.append("postgres: stopped")
            except ExternalError as e:
                notes.append(f"postgres: fast stop failed ({str(e).splitlines()[0]}); stopping immediately")
                try:
                    self.stop("immediate")
                except ExternalError as e2:
                    pid = self.pid()
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                    notes.append(f"postgres: immediate stop failed too ({str(e2).splitlines()[0]}); killed")
        stop_watchdog(self.watchdog)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        return notes


@dataclass
class S3Keys:
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_REGION": "us-east-1"}


class Moto:
    """moto's S3 server (in memory: it must live for the whole run), on a port it picks."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.log = directory / "moto.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.watchdog: subprocess.Popen | None = None
        self.keys = S3Keys("AKIDCRASH" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "MOTO_ACCOUNT_ID": "123456789012", "AWS_CONFIG_FILE": "/dev/null",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "PYTHONUNBUFFERED": "1"}
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory,
                start_new_session=True)
        self.watchdog = start_watchdog(f"kill -9 {self.proc.pid} 2>/dev/null", self.directory)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = moto_port(self.log.read_text(errors="replace"))
            if port is not None:
                self.port = port
                return
            if self.proc.poll() is not None:
                raise ExternalError(f"moto exited with status {self.proc.returncode} before listening "
                                    f"({SETUP_HINT}); its log:\n{self.tail()}")
            time.sleep(0.05)
        raise ExternalError(f"moto did not listen within {timeout:.0f} s; its log:\n{self.tail()}")

    def create_bucket(self, bucket: str) -> None:
        """CreateBucket, signed with the generated keys (boto3)."""
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise ExternalError(f"boto3 is missing; {SETUP_HINT}") from None
        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
            aws_access_key_id=self.keys.access_key_id, aws_secret_access_key=self.keys.secret_access_key,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 5}))
        try:
            client.create_bucket(Bucket=bucket)
            client.head_bucket(Bucket=bucket)
        except Exception as e:  # botocore's errors share no useful base class
            raise ExternalError(f"cannot create the bucket {bucket} on moto: {e}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "    (no log)"
        return "\n".join("    " + line for line in text[-lines:])

    def close(self) -> list[str]:
        notes = []
        stop_watchdog(self.watchdog)
        if self.proc is not None:
            # SIGKILL: moto holds nothing that needs flushing, and it has been seen to
            # ignore SIGTERM when started with that signal blocked.
            if self.proc.poll() is None:
                self.proc.kill()
                notes.append(f"moto: killed (pid {self.proc.pid})")
            self.proc.wait()
        return notes
