#!/usr/bin/env python3
"""Crash test: a local cluster under load, killed and restarted, then checked.

For each seed it starts a fresh cluster (tools/cluster), runs two load generators against
the coordinator (list-append, recorded as a history, and bank), and meanwhile a seeded
nemesis kill -9s one server or all of them every few seconds and restarts them; servers
may also be started with failpoints (TXNWAL_FAILPOINTS) so they kill themselves at a
chosen point inside a commit. After the run it heals the cluster, lets the generator do
final reads of every key, and checks:

  * the list-append history with tools/checker (strict serializability, lost appends, ...)
  * the bank invariant (the generator exits 1 when a total ever differed)
  * white-box invariants with txn-verify: every blob referenced from consensus exists,
    every data shard equals the replay of the committed transactions, and no consensus
    head or shard upper went backwards across any restart
  * that at least --min-ok-share of the read-only and write-only list-append
    transactions succeeded (mixed ones are refused whenever another commit slips in
    between their read and their commit, which is most of the time under load).

With `--backend pg-s3` the coordinator keeps consensus in PostgreSQL and blobs in S3
instead of the cluster's consensus and blob-store servers: per seed a fresh PostgreSQL 15
(initdb into the seed's directory, fsync on, a password-protected role) and a fresh moto
S3 server are started (tools/crashtest/external.py), the cluster runs only the
txn-coordinator, and the nemesis kill -9s the coordinator (and arms its failpoints) and
crashes PostgreSQL (`pg_ctl stop -m immediate`, restarted after a short seeded pause).
moto is never touched: it keeps everything in memory. The checks are the same.

Exit status 0 when every seed passes; 1 with the witnesses otherwise; 2 for usage errors.

`--self-test` runs the servers with deliberate bugs (TXNWAL_TEST_BUGS) and passes only if
the crash test catches each of them.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools" / "cluster"))
sys.path.insert(0, str(HERE))
import cluster as clusterlib  # noqa: E402
import external  # noqa: E402

CHECKER = REPO / "tools" / "checker" / "check.py"
STORAGE = ("blob-store", "consensus")
BACKENDS = ("cluster", "pg-s3")
# The cluster roles each backend runs (and the nemesis kills); pg-s3 also crashes PostgreSQL.
BACKEND_ROLES = {"cluster": clusterlib.ROLES, "pg-s3": ("txn-coordinator",)}
# What each backend's run needs in --bin-dir.
BACKEND_TOOLS = {"cluster": ("blob-store", "consensus", "txn-coordinator", "loadgen", "txn-verify"),
                 "pg-s3": ("txn-coordinator", "loadgen", "txn-verify")}
BUCKET = "crash"

# Failpoints the nemesis arms, per role (names documented in deploy/README.md).
FAILPOINTS = {
    "consensus": ["consensus.before-fsync", "consensus.after-fsync-before-reply"],
    "blob-store": ["blob.before-fsync", "blob.after-fsync-before-reply"],
    "txn-coordinator": [
        "coordinator.after-batch-put", "coordinator.after-txns-cas", "coordinator.before-reply",
        "coordinator.before-apply", "coordinator.mid-apply",
    ],
}


def log(msg: str) -> None:
    print(f"[crashtest {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Options:
    duration: float
    kill_min: float
    kill_max: float
    clients: int
    shards: int
    failpoints: bool
    min_ok_share: float
    bin_dir: Path
    workdir: Path
    keep: bool
    final_read_timeout: float = 300
    backend: str = "cluster"
    bugs: dict[str, str] = field(default_factory=dict)  # role -> TXNWAL_TEST_BUGS value
    bug_failpoints: dict[str, str] = field(default_factory=dict)  # role -> TXNWAL_FAILPOINTS forced


@dataclass
class Outcome:
    seed: int
    passed: bool
    # Correctness failures: the checker, the bank total, txn-verify, heads going back.
    violations: list[str]
    # Everything else that makes a run fail: a server that would not start, a load
    # generator that crashed, too few successful transactions.
    problems: list[str]
    stats: dict


class Run:
    """One seed: cluster, load, nemesis, heal, checks."""

    def __init__(self, seed: int, opts: Options):
        self.seed = seed
        self.opts = opts
        self.rng = random.Random(seed)
        self.dir = opts.workdir / f"seed-{seed}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        roles = {role: clusterlib.RoleConfig(listen=None, metrics=None) for role in clusterlib.ROLES}
        roles["blob-store"].extra["bucket"] = BUCKET
        # Even seeds keep every batch as written, so txn-verify replays every shard row by
        # row; odd seeds let compaction and GC run (and crash) too, where the replay of
        # compacted times is checked by counts, sums and key bounds.
        self.compaction = seed % 2 == 1
        if not self.compaction:
            roles["txn-coordinator"].extra_args.append("--no-compaction")
        self.roles = roles
        # pg-s3: the storage services, started first in `execute` (the cluster's config
        # needs their addresses, so the cluster is made then too).
        self.pg: external.Postgres | None = None
        self.moto: external.Moto | None = None
        self.pg_stopped = False  # the nemesis stopped PostgreSQL and has not restarted it yet
        self.cluster: clusterlib.Cluster | None = None
        if opts.backend == "cluster":
            self.cluster = self.make_cluster()
        self.problems: list[str] = []
        self.violations: list[str] = []
        self.events: list[str] = []
        # (monotonic time, event): events.log, and when each server came back (recovery).
        self.timeline: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self.load_started: float | None = None  # when the list-append generator was started
        self.load_ended: float | None = None  # when the nemesis stopped
        self.heads_index = 0
        self.armed: dict[str, str] = {}  # role -> failpoint spec it was started with
        self.loading = False  # set once both workloads are running

    # ---- helpers -----------------------------------------------------------------------

    def make_cluster(self, blob: str | None = None, consensus: str | None = None) -> clusterlib.Cluster:
        config = clusterlib.Config(
            data_dir=self.dir / "cluster", bin_dir=self.opts.bin_dir, storage_transport="unix",
            start_timeout=60, stop_timeout=30, log_level="notice", roles=self.roles,
            enabled=BACKEND_ROLES[self.opts.backend], external_blob=blob, external_consensus=consensus)
        return clusterlib.Cluster(config)

    def start_external(self) -> None:
        """pg-s3: moto with the bucket, PostgreSQL with the role; then the cluster."""
        # PostgreSQL's account must reach its directory below the seed's: the directories
        # this test made get search (not read) permission for everyone; others must have it.
        for d in (self.opts.workdir, self.dir):
            os.chmod(d, os.stat(d).st_mode | 0o111)
        blocked = external.untraversable_ancestors(self.dir)
        if blocked:
            raise external.ExternalError(
                f"PostgreSQL, running as {external.SERVER_ACCOUNT}, cannot reach {self.dir}: "
                f"{', '.join(map(str, blocked))} lack search permission for others; "
                f"choose a --workdir it can reach (the default is under /tmp)")
        self.moto = external.Moto(self.dir / "moto")
        self.moto.start()
        self.moto.create_bucket(BUCKET)
        secrets_dir = self.dir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        self.pg = external.Postgres(self.dir / "postgres", secrets_dir)
        self.pg.create()
        self.event(f"moto on port {self.moto.port}; PostgreSQL on port {self.pg.port}")
        self.cluster = self.make_cluster(blob=external.s3_url(BUCKET, self.moto.port), consensus=self.pg.url)

    def event(self, text: str) -> None:
        self.events.append(text)
        self.timeline.append((time.monotonic(), text))

    def tool(self, name: str) -> str:
        return str(self.opts.bin_dir / name)

    def fault_targets(self) -> list[str]:
        """What the nemesis may crash: the cluster's roles, and PostgreSQL in pg-s3."""
        return list(self.cluster.roles) + (["postgres"] if self.pg is not None else [])

    def storage_env(self) -> dict[str, str]:
        if self.moto is not None:
            return {**os.environ, **self.moto.keys.env()}
        key_id, secret = self.cluster.s3_keys()
        return {**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def role_env(self, role: str, arm: bool) -> dict[str, str]:
        env: dict[str, str] = {}
        if role in self.opts.bugs:
            env["TXNWAL_TEST_BUGS"] = self.opts.bugs[role]
        # A deliberate bug's failpoint is armed only on restarts during the load, so the
        # workloads get set up before the bug can wedge the cluster.
        spec = self.opts.bug_failpoints.get(role) if arm and self.loading else None
        if spec is None and arm and self.opts.failpoints and self.rng.random() < 0.5:
            point = self.rng.choice(FAILPOINTS[role])
            spec = f"{point}=crash#{self.rng.randint(5, 400)}"
        if spec:
            env["TXNWAL_FAILPOINTS"] = spec
            env["TXNWAL_FAILPOINT_SEED"] = str(self.rng.randrange(1 << 31))
            self.armed[role] = spec
        else:
            self.armed.pop(role, None)
        return env

    def start(self, role: str, arm: bool = True) -> None:
        env = self.role_env(role, arm)
        # pg-s3: the coordinator signs its S3 requests with moto's keys.
        self.cluster.start(role, {**env, **(self.moto.keys.env() if self.moto is not None else {})})
        self.event(f"start {role}" + (f" armed {env['TXNWAL_FAILPOINTS']}" if "TXNWAL_FAILPOINTS" in env else ""))

    def record_heads(self) -> None:
        """Records every consensus head; fails the run if one went backwards."""
        blob, consensus = self.cluster.storage_urls()
        path = self.dir / f"heads-{self.heads_index:04d}.json"
        args = [self.tool("txn-verify"), "heads", "--blob", blob, "--consensus", consensus, "--record", str(path)]
        if self.heads_index > 0:
            args += ["--previous", str(self.dir / f"heads-{self.heads_index - 1:04d}.json")]
        r = subprocess.run(args, capture_output=True, text=True, env=self.storage_env(), timeout=120)
        if r.returncode == 1:
            self.violations.append(f"a consensus head or shard upper went backwards:\n{r.stdout}{r.stderr}")
        elif r.returncode != 0:
            # Consensus may be down (the nemesis is running); try again at the next restart.
            self.event(f"heads not recorded ({r.returncode}): {r.stderr.strip()[:200]}")
            return
        self.heads_index += 1

    def loadgen(self, workload: str, extra: list[str]) -> subprocess.Popen:
        # Final reads start when the load ends, while the cluster heals; give them longer
        # than the slowest heal (draining armed servers, several start rounds).
        args = [self.tool("loadgen"), workload, *self.cluster.client_args(),
                "--duration", f"{self.opts.duration:g}", "--seed", str(self.seed),
                "--final-read-timeout", f"{self.opts.final_read_timeout:g}",
                "--clients", str(self.opts.clients), "--shards", str(self.opts.shards),
                "--summary", str(self.dir / f"{workload}-summary.json"), *extra]
        out = open(self.dir / f"{workload}.out", "wb")
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_progress(self, name: str, proc: subprocess.Popen, timeout: float = 60) -> None:
        """Waits until a load generator prints its first progress line (its setup is done),
        bringing back any server an armed failpoint killed meanwhile."""
        out = self.dir / f"{name}.out"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if any(line.startswith("[") for line in out.read_text(errors="replace").splitlines()):
                return
            self.revive()
            time.sleep(0.05)
        self.event(f"{name} showed no progress within {timeout:.0f} s; starting the rest anyway")

    # ---- phases ------------------------------------------------------------------------

    def nemesis(self, until: float, loads: list[subprocess.Popen]) -> None:
        """Kills and restarts servers until `until` (monotonic) or the load ends."""
        next_fault = time.monotonic() + self.rng.uniform(self.opts.kill_min, self.opts.kill_max)
        while time.monotonic() < until and any(p.poll() is None for p in loads):
            if self.revive():
                continue
            if time.monotonic() >= next_fault:
                self.fault()
                next_fault = time.monotonic() + self.rng.uniform(self.opts.kill_min, self.opts.kill_max)
            time.sleep(0.05)

    def revive(self) -> bool:
        """Restarts the servers that killed themselves at a failpoint (maybe armed again)."""
        self.check_external()
        if self.pg is not None and not self.pg_stopped and not self.pg.running():
            # Only the nemesis stops it, and it restarts it at once.
            self.problems.append(f"PostgreSQL exited on its own (see {self.pg.log}); restarted")
            self.event("postgres died")
            self.ensure_up(arm=False)
            return True
        down = [r for r in self.cluster.roles if self.cluster.pid(r) is None]
        if not down:
            return False
        for role in down:
            self.event(f"{role} died (armed: {self.armed.get(role, '-')})")
        time.sleep(self.rng.uniform(0.1, 1.0))
        self.restart(down)
        return True

    def fault(self) -> None:
        targets = self.fault_targets()
        roll = self.rng.random()
        if roll < 0.15:
            victims = list(targets)
        else:
            victims = [self.rng.choice(targets)]
        killed = [v for v in victims if v != "postgres"]
        for role in killed:
            self.cluster.kill(role)
        if killed:
            self.event(f"kill -9 {' '.join(killed)}")
        if "postgres" in victims:
            self.stop_postgres()
        time.sleep(self.rng.uniform(0.1, 1.5))
        self.restart(victims)

    def stop_postgres(self) -> None:
        """Crashes PostgreSQL: every server process killed at once; restarted by ensure_up."""
        assert self.pg is not None
        self.pg_stopped = True
        self.pg.stop("immediate")
        self.event("pg_ctl stop -m immediate")

    def check_external(self) -> None:
        """moto holds the blobs in memory: if it died the run cannot go on."""
        if self.moto is not None and not self.moto.alive():
            raise external.ExternalError(
                f"moto (the S3 server) exited with status {self.moto.proc.returncode if self.moto.proc else '?'} "
                f"and took every blob with it; its log:\n{self.moto.tail()}")

    def restart(self, roles: list[str]) -> None:
        self.ensure_up(arm=True)
        self.record_heads()

    def ensure_up(self, arm: bool) -> None:
        """Starts every server that is down, storage first, until all run at once.

        A failpoint can fire while another server is starting (the coordinator recovers
        through consensus, which may crash under it), so this goes round again; after the
        first round servers start unarmed so that it converges. In pg-s3, PostgreSQL
        starts first (the coordinator recovers from it)."""
        for attempt in range(8):
            if self.pg is not None and not self.pg.running():
                try:
                    self.pg.start()
                    self.pg_stopped = False
                    self.event("postgres started")
                except external.ExternalError as e:
                    self.event(f"postgres failed to start ({str(e).splitlines()[0]}); going round again")
                    time.sleep(0.2 * (attempt + 1))
                    continue
            for role in self.cluster.roles:
                if self.cluster.pid(role) is not None:
                    continue
                try:
                    self.start(role, arm=arm and attempt == 0)
                except clusterlib.ClusterError as e:
                    first = str(e).splitlines()[0]
                    self.event(f"{role} failed to start ({first}); going round again")
                    self.cluster.kill(role)
            if all(self.cluster.pid(r) is not None for r in self.cluster.roles):
                return
            time.sleep(0.2 * (attempt + 1))
        raise clusterlib.ClusterError("the cluster did not come up after 8 rounds; see the logs")

    def heal(self) -> None:
        """Every server up, none armed (bugs stay: they are what the self-test checks)."""
        self.check_external()
        for role in self.cluster.roles:
            if self.cluster.pid(role) is not None and role in self.armed:
                self.cluster.stop(role)
        self.ensure_up(arm=False)
        self.event("healed")

    def execute(self) -> Outcome:
        log(f"seed {self.seed}: cluster in {self.dir}")
        stats: dict = {}
        loads: list[subprocess.Popen] = []
        try:
            if self.opts.backend == "pg-s3":
                self.start_external()
            self.cluster.prepare()
            self.ensure_up(arm=True)
            self.record_heads()
            history = self.dir / "history.jsonl"
            # The bank opens with a deposit committed right after a read that found its
            # shards empty, which any other commit in between refuses; so it opens first,
            # and the list-append load starts once the bank reports progress.
            bank = self.loadgen("bank", ["--accounts", "8"])
            loads.append(bank)
            self.wait_for_progress("bank", bank)
            self.load_started = time.monotonic()  # about the history's time origin
            loads.insert(0, self.loadgen("list-append", ["--history", str(history)]))
            self.wait_for_progress("list-append", loads[0])
            self.loading = True
            for role in self.opts.bug_failpoints:
                # Restart it now with the bug's crash point armed (the self-test).
                self.cluster.kill(role)
                self.event(f"kill -9 {role} (to arm the deliberate bug's failpoint)")
                self.restart([role])
            self.nemesis(time.monotonic() + self.opts.duration, loads)
            self.load_ended = time.monotonic()
            self.heal()
            self.record_heads()
            for p, name in zip(loads, ("list-append", "bank")):  # the order of `loads`
                try:
                    rc = p.wait(timeout=self.opts.duration + 240)
                except subprocess.TimeoutExpired:
                    p.kill()
                    rc = p.wait()
                    self.problems.append(f"loadgen {name} did not finish (killed)")
                if rc != 0:
                    tail = (self.dir / f"{name}.out").read_text(errors="replace").splitlines()[-15:]
                    # The bank generator exits 1 exactly when a total was wrong.
                    found = self.violations if (name == "bank" and rc == 1) else self.problems
                    found.append(f"loadgen {name} exited {rc}:\n    " + "\n    ".join(tail))
            self.heal()
            stats = self.check(history)
        except clusterlib.ClusterError as e:
            self.problems.append(f"cluster: {e}")
        except external.ExternalError as e:
            self.problems.append(f"storage services: {e}")
        finally:
            for p in loads:  # a load generator left behind by an error must not linger
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            if self.cluster is not None:
                for line in self.cluster.down():
                    self.event(line)
            # Also on errors and Ctrl-C: PostgreSQL stopped, moto killed.
            for service in (self.pg, self.moto):
                if service is not None:
                    for line in service.close():
                        self.event(line)
            (self.dir / "events.log").write_text(
                "".join(f"{when - self.started:8.2f}s  {text}\n" for when, text in self.timeline))
        passed = not self.problems and not self.violations
        if passed and not self.opts.keep:
            for d in ("cluster", "postgres", "moto", "secrets"):
                shutil.rmtree(self.dir / d, ignore_errors=True)
        return Outcome(self.seed, passed, self.violations, self.problems, stats)

    def check(self, history: Path) -> dict:
        stats: dict = {"compaction": self.compaction,
                       "faults": sum(1 for e in self.events if e.startswith(("kill -9", "pg_ctl stop"))),
                       "self-kills": sum(1 for e in self.events if " died " in e)}
        if self.pg is not None:
            stats["backend"] = self.opts.backend
            stats["postgres-crashes"] = sum(1 for e in self.events if e.startswith("pg_ctl stop"))
        try:
            stats.update(self.recovery_stats(history))
        except (OSError, ValueError) as e:
            self.event(f"no recovery figures: {e}")
        # 1. The history checker.
        r = subprocess.run([sys.executable, str(CHECKER), str(history), "--json"], capture_output=True, text=True)
        try:
            verdict = json.loads(r.stdout)
        except json.JSONDecodeError:
            verdict = {"valid": None, "error": r.stderr.strip() or r.stdout.strip()}
        stats["checker"] = {k: verdict.get(k) for k in ("valid", "stats", "seconds")}
        if verdict.get("valid") is not True:
            if verdict.get("valid") is False:
                self.violations.append("history checker: " + json.dumps(verdict.get("anomalies"), indent=1)[:4000])
            else:
                self.problems.append(f"history checker could not run: {verdict.get('error')}")
        # 2. Enough succeeded.
        try:
            summary = json.loads((self.dir / "list-append-summary.json").read_text())
            by_kind = summary.get("counts", {})
            counts = by_kind.get("total", {})
            ok, fail, info = (int(counts.get(k, 0)) for k in ("ok", "fail", "info"))
            stats["list-append"] = {"ok": ok, "fail": fail, "info": info}
            # Mixed transactions read at the latest time and commit right after it, so
            # any commit in between refuses them (a harmless `fail`); most do under load.
            # The share that must succeed is taken over the read-only and write-only ones.
            simple = [by_kind.get(k, {}) for k in ("read_only", "write_only")]
            ok = sum(int(c.get("ok", 0)) for c in simple)
            total = sum(int(c.get(k, 0)) for c in simple for k in ("ok", "fail", "info"))
            stats["list-append"]["simple-ok-share"] = round(ok / total, 3) if total else None
            retracted = summary.get("list_append", {}).get("unexpected_retractions", 0)
            if retracted:
                # The workload only ever adds rows; a negative diff is corruption (and
                # could cancel a duplicate before the checker saw it).
                self.violations.append(f"{retracted} retractions in list-append shards, which never write one")
            finals = summary.get("list_append", {}).get("final_reads", {})
            if finals.get("done", 0) < finals.get("keys", 0):
                # After healing every acknowledged append must be readable again; a
                # cluster that cannot serve them has lost or wedged committed data.
                self.violations.append(
                    f"after healing, final reads completed for only {finals.get('done')} of "
                    f"{finals.get('keys')} keys: committed data is unreadable (see {self.dir}/list-append.out)")
            if total == 0 or ok / total < self.opts.min_ok_share:
                self.problems.append(
                    f"only {ok} of {total} read-only and write-only list-append transactions succeeded "
                    f"(< {self.opts.min_ok_share:.0%}); see {self.dir}/list-append.out")
        except (OSError, json.JSONDecodeError, ValueError) as e:
            self.problems.append(f"no list-append summary: {e}")
        try:
            bank = json.loads((self.dir / "bank-summary.json").read_text())
            b = bank.get("bank", {})
            stats["bank"] = {**bank.get("counts", {}).get("total", {}),
                             "audits": b.get("invariant_checks"), "violations": len(b.get("violations", []))}
            if not b.get("invariant_checks") or not b.get("final_check"):
                self.problems.append("the bank total was never checked (no audit, or no final audit); see bank.out")
        except (OSError, json.JSONDecodeError):
            self.problems.append("no bank summary")
        # 3. White-box invariants.
        blob, consensus = self.cluster.storage_urls()
        r = subprocess.run(
            [self.tool("txn-verify"), "check", "--blob", blob, "--consensus", consensus, "--require-applied"],
            capture_output=True, text=True, env=self.storage_env(), timeout=600)
        stats["verify"] = r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else []
        # A replay that was skipped, or a data shard that could not be compared, would let
        # the check pass without checking; only the names table may be skipped.
        skipped = [line.strip() for line in r.stdout.splitlines()
                   if line.strip().startswith("skipped")
                   and not any(benign in line for benign in ("shard-name table", "has no state", "no txns entry and no name"))]
        if r.returncode == 0 and skipped:
            self.problems.append("txn-verify skipped checks:\n    " + "\n    ".join(skipped))
        if r.returncode == 1:
            self.violations.append(f"txn-verify check found violations:\n{r.stdout[-4000:]}{r.stderr[-2000:]}")
        elif r.returncode != 0:
            self.problems.append(f"txn-verify check exited {r.returncode}:\n{r.stdout[-4000:]}{r.stderr[-2000:]}")
        return stats


    def recovery_stats(self, history: Path) -> dict:
        """How long the load went without a successful transaction: the longest stretch
        overall, and after each server (re)start during the load until the next ok."""
        if self.load_started is None:
            return {}
        oks = ok_completion_seconds(history.read_text().splitlines())
        # The generator's own clock starts about when it was started; its load ends after
        # --duration (final reads follow), or earlier if the nemesis ended first.
        end = min((self.load_ended or time.monotonic()) - self.load_started, self.opts.duration)
        starts: dict[str, list[float]] = {}
        for when, text in self.timeline:
            role = restarted_role(text)
            at = when - self.load_started
            if role is not None and 0 < at < end:
                starts.setdefault(role, []).append(at)
        return {"longest-gap-without-ok-s": round(longest_gap(oks, end), 1),
                "recovery-s": {role: recovery_summary(recovery_delays(oks, times))
                               for role, times in sorted(starts.items())}}


# ---- recovery figures (pure) ------------------------------------------------------------


def ok_completion_seconds(history_lines: list[str]) -> list[float]:
    """The times (seconds on the history's clock) of its `ok` completions, in order."""
    times = []
    for line in history_lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("type") == "ok":
            times.append(event["time"] / 1e9)
    return sorted(times)


def restarted_role(event: str) -> str | None:
    """The server an event says was (re)started: `start ROLE ...` or `postgres started`."""
    if event == "postgres started":
        return "postgres"
    if event.startswith("start "):
        return event.split()[1]
    return None


def recovery_delays(oks: list[float], starts: list[float]) -> list[float | None]:
    """For each start time, the seconds until the next ok completion (None: none came)."""
    out: list[float | None] = []
    for start in starts:
        i = bisect.bisect_right(oks, start)
        out.append(oks[i] - start if i < len(oks) else None)
    return out


def recovery_summary(delays: list[float | None]) -> dict:
    done = sorted(d for d in delays if d is not None)
    summary: dict = {"restarts": len(delays)}
    if done:
        summary["median"] = round(done[len(done) // 2], 2)
        summary["max"] = round(done[-1], 2)
    if len(done) < len(delays):
        summary["never"] = len(delays) - len(done)
    return summary


def longest_gap(oks: list[float], end: float) -> float:
    """The longest stretch of [0, end] without an ok completion."""
    points = [0.0] + [t for t in oks if t <= end] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def run_seeds(seeds: list[int], opts: Options) -> list[Outcome]:
    outcomes = []
    for seed in seeds:
        started = time.monotonic()
        outcome = Run(seed, opts).execute()
        outcome.stats["seconds"] = round(time.monotonic() - started, 1)
        verdict = "PASS" if outcome.passed else "FAIL"
        log(f"seed {seed}: {verdict} {json.dumps(outcome.stats)}")
        for v in outcome.violations:
            print(f"  - VIOLATION: {v}", flush=True)
        for p in outcome.problems:
            print(f"  - problem: {p}", flush=True)
        outcomes.append(outcome)
    return outcomes


SELF_TESTS = {
    # The coordinator commits only a transaction's first shard yet acknowledges it.
    "commit-first-shard-only": dict(bugs={"txn-coordinator": "commit-first-shard-only"}, bug_failpoints={}),
    # The consensus log acknowledges a CaS before writing it; killed right after such an
    # early acknowledgement, the write is lost although the coordinator was told it held.
    "ack-before-fsync": dict(
        bugs={"consensus": "ack-before-fsync"},
        bug_failpoints={"consensus": "consensus.after-early-ack=sleep(20)->crash@0.05"}),
}


# A bug that loses data only when a crash lands in its window (ack-before-fsync) is not
# caught by every run; each bug gets this many seeds, and must be caught by one of them.
SELF_TEST_ATTEMPTS = 3


def self_tests_for(backend: str) -> dict[str, dict]:
    """The deliberate bugs that live in servers the backend runs (pg-s3: the coordinator's)."""
    roles = set(BACKEND_ROLES[backend])
    return {name: bug for name, bug in SELF_TESTS.items()
            if set(bug["bugs"]) <= roles and set(bug["bug_failpoints"]) <= roles}


def self_test(opts: Options, seed: int) -> int:
    failures = []
    tests = self_tests_for(opts.backend)
    for name, bug in tests.items():
        log(f"self-test: running with the deliberate bug {name}; the crash test must fail")
        # A bug may wedge the cluster for good (reads waiting on state consensus lost), so
        # final reads give up sooner here; incomplete final reads count as a finding.
        o = Options(**{**opts.__dict__, "bugs": bug["bugs"], "bug_failpoints": bug["bug_failpoints"],
                       "workdir": opts.workdir / f"self-test-{name}", "failpoints": False,
                       "final_read_timeout": 60})
        caught = None
        for s in range(seed, seed + SELF_TEST_ATTEMPTS):
            [outcome] = run_seeds([s], o)
            # Only a correctness finding counts: a run that merely broke down caught nothing.
            if outcome.violations:
                caught = (s, len(outcome.violations))
                break
        if caught is None:
            failures.append(name)
            log(f"self-test: the bug {name} went UNDETECTED in {SELF_TEST_ATTEMPTS} seeds")
        else:
            log(f"self-test: the bug {name} was caught by seed {caught[0]} ({caught[1]} violation(s))")
    if failures:
        print(f"crashtest self-test FAILED: not caught: {', '.join(failures)}")
        return 1
    print(f"crashtest self-test passed: every deliberate bug was caught ({', '.join(tests)})")
    return 0


def parse_seeds(text: str) -> list[int]:
    """`1,2,5` or `1-10` or a mix; ValueError when malformed or empty."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if hi:
            if int(hi) < int(lo):
                raise ValueError(f"empty seed range {part}")
            seeds += list(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(lo))
    return seeds


def parse_kill_interval(text: str) -> tuple[float, float]:
    """`MIN:MAX` or `SECONDS` (both the same); ValueError unless 0 < MIN <= MAX."""
    kmin, _, kmax = text.partition(":")
    lo, hi = float(kmin), float(kmax or kmin)
    if not 0 < lo <= hi:
        raise ValueError(f"bad kill interval {text}")
    return lo, hi


def missing_prerequisites(backend: str, bin_dir: Path) -> list[str]:
    """What a run with `backend` needs and does not find, as messages."""
    missing = [f"{bin_dir / tool} is missing; build first (swift build -c release)"
               for tool in BACKEND_TOOLS[backend] if not os.access(bin_dir / tool, os.X_OK)]
    if backend == "pg-s3":
        try:
            external.find_postgres_bin()
        except external.ExternalError as e:
            missing.append(str(e))
        import importlib.util
        for module in ("moto", "boto3"):
            if importlib.util.find_spec(module) is None:
                missing.append(f"the Python module {module} is missing; {external.SETUP_HINT}")
    return missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="crashtest.py", description=__doc__.split("\n\n")[0],
        epilog="Example: tools/crashtest/crashtest.py --seeds 1-10 --duration 60; "
               "with PostgreSQL and S3: add --backend pg-s3")
    p.add_argument("--backend", choices=BACKENDS, default="cluster",
                   help="cluster: the coordinator on our blob-store and consensus servers (default); "
                        "pg-s3: on a PostgreSQL 15 and a moto S3 server started per seed")
    p.add_argument("--seeds", default="1", help="seeds to run: 1,2,5 or 1-10 (default: 1)")
    p.add_argument("--duration", type=float, default=30, help="seconds of load and faults per seed (default: 30)")
    p.add_argument("--kill-interval", default="2:6", help="seconds between faults, MIN:MAX (default: 2:6)")
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients per workload (default: 8)")
    p.add_argument("--shards", type=int, default=4, help="data shards per workload (default: 4)")
    p.add_argument("--no-failpoints", action="store_true", help="only external kill -9, no self-crashing servers")
    p.add_argument("--min-ok-share", type=float, default=0.3,
                   help="fail when fewer read-only and write-only list-append txns than this share "
                        "succeed (default: 0.3)")
    p.add_argument("--bin-dir", default=os.environ.get("TXNWAL_BIN_DIR", str(REPO / ".build" / "release")),
                   help="where the servers, loadgen and txn-verify are (default: .build/release)")
    p.add_argument("--workdir", help="where runs keep their data (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep passing runs' cluster data")
    p.add_argument("--self-test", action="store_true", help="check that deliberate bugs are caught")
    args = p.parse_args(argv)

    try:
        seeds = parse_seeds(args.seeds)
        kill_min, kill_max = parse_kill_interval(args.kill_interval)
    except ValueError:
        p.error("bad --seeds or --kill-interval")
    bin_dir = Path(args.bin_dir).resolve()
    missing = missing_prerequisites(args.backend, bin_dir)
    if missing:
        p.error("\n  ".join(missing))
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="crashtest-"))
    if args.backend == "pg-s3":
        # PostgreSQL's account reaches its data below it (search permission, no listing).
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, os.stat(workdir).st_mode | 0o111)
    opts = Options(
        duration=args.duration, kill_min=kill_min, kill_max=kill_max, clients=args.clients, shards=args.shards,
        failpoints=not args.no_failpoints, min_ok_share=args.min_ok_share, bin_dir=bin_dir, workdir=workdir,
        keep=args.keep, backend=args.backend)
    log(f"work directory {workdir}" + (f" (backend {args.backend})" if args.backend != "cluster" else ""))
    try:
        if args.self_test:
            return self_test(opts, seeds[0])
        outcomes = run_seeds(seeds, opts)
    except KeyboardInterrupt:
        # Each run has stopped its servers on the way out; the data goes too unless kept.
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        print("crashtest: interrupted" + (f"; data kept in {workdir}" if args.workdir or args.keep else ""))
        return 130
    failed = [o.seed for o in outcomes if not o.passed]
    passed = [o.seed for o in outcomes if o.passed]
    print(f"crashtest: {len(passed)} of {len(outcomes)} seeds passed"
          + (f"; FAILED seeds: {failed} (data kept in {workdir})" if failed else ""))
    if not failed and not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
