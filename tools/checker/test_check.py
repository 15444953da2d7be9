"""Tests for check.py: golden histories, a brute-force differential oracle, scale."""
from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

try:  # keep Hypothesis' scratch files out of the repository
    import tempfile

    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "swift-txn-wal-checker-hypothesis"))
except ImportError:  # pragma: no cover
    pass

CHECK_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check.py")


# --------------------------------------------------------------------------
# Helpers to write histories compactly
# --------------------------------------------------------------------------

class H:
    """Build a history line by line. Ops use ("a", k, v) / ("r", k, list-or-None)."""

    def __init__(self):
        self.lines = []
        self.n = 0

    def _ev(self, typ, proc, ops, filled):
        value = []
        for f, k, v in ops:
            if f == "a":
                value.append(["append", k, v])
            else:
                value.append(["r", k, v if filled else None])
        self.lines.append(json.dumps({
            "index": self.n, "time": self.n * 1000, "type": typ,
            "process": proc, "f": "txn", "value": value,
        }))
        self.n += 1
        return self

    def inv(self, proc, *ops):
        return self._ev("invoke", proc, ops, False)

    def ok(self, proc, *ops):
        return self._ev("ok", proc, ops, True)

    def fail(self, proc, *ops):
        return self._ev("fail", proc, ops, False)

    def info(self, proc, *ops):
        return self._ev("info", proc, ops, False)

    def txn(self, proc, *ops, typ="ok"):
        self.inv(proc, *ops)
        return self._ev(typ, proc, ops, typ == "ok")

    def result(self, consistency=check.STRICT):
        return check.check_lines(self.lines, consistency)


def kinds(res):
    return set(res["anomalies"])


# --------------------------------------------------------------------------
# Golden histories: one per anomaly type, plus valid ones
# --------------------------------------------------------------------------

def test_valid_serial_history():
    h = (H().txn(0, ("a", "x", 1), ("r", "x", [1]))
         .txn(1, ("r", "x", [1]), ("a", "y", 2))
         .txn(2, ("r", "y", [2]), ("a", "x", 3), ("r", "x", [1, 3]))
         .txn(3, ("r", "x", [1, 3]), ("r", "y", [2])))
    res = h.result()
    assert res["valid"], res["anomalies"]
    assert h.result(check.SERIAL)["valid"]


def test_valid_concurrent_history():
    # T1 and T2 overlap; T2 may serialize before T1.
    h = (H().inv(0, ("a", "x", 1)).inv(1, ("r", "x", None))
         .ok(1, ("r", "x", [])).ok(0, ("a", "x", 1))
         .txn(2, ("r", "x", [1])))
    assert h.result()["valid"]


def test_internal_inconsistency():
    h = H().txn(0, ("a", "x", 1), ("r", "x", []))
    assert "internal" in kinds(h.result())
    h = H().txn(0, ("r", "x", []), ("a", "x", 1), ("r", "x", [1, 1]))
    assert {"internal", "duplicate-elements"} <= kinds(h.result())


def test_duplicate_elements():
    h = H().txn(0, ("a", "x", 1)).txn(1, ("r", "x", [1, 1]))
    res = h.result()
    assert "duplicate-elements" in kinds(res)
    assert res["anomalies"]["duplicate-elements"][0]["duplicates"] == [1]


def test_duplicate_appends():
    h = H().txn(0, ("a", "x", 1)).txn(1, ("a", "x", 1)).txn(2, ("r", "x", [1]))
    assert "duplicate-appends" in kinds(h.result())


def test_g1a_aborted_read():
    h = H().txn(0, ("a", "x", 1), typ="fail").txn(1, ("r", "x", [1]))
    res = h.result()
    assert "G1a" in kinds(res)
    w = res["anomalies"]["G1a"][0]
    assert w["failed_writer"]["index"] == 0 and w["reader"]["index"] == 2


def test_g1b_intermediate_read():
    h = (H().inv(0, ("a", "x", 1), ("a", "x", 2)).txn(1, ("r", "x", [1]))
         .ok(0, ("a", "x", 1), ("a", "x", 2)).txn(2, ("r", "x", [1, 2])))
    res = h.result()
    assert "G1b" in kinds(res)
    assert res["anomalies"]["G1b"][0]["writer_final_value"] == 2


def test_garbage_read():
    h = H().txn(0, ("r", "x", [99]))
    assert kinds(h.result()) == {"garbage-read"}


def test_incompatible_order():
    h = (H().txn(0, ("a", "x", 1)).txn(1, ("a", "x", 2))
         .txn(2, ("r", "x", [1, 2])).txn(3, ("r", "x", [2, 1])))
    res = h.result()
    assert "incompatible-order" in kinds(res)
    assert sorted(map(tuple, res["anomalies"]["incompatible-order"][0]["reads"])) == [(1, 2), (2, 1)]


def test_txn_appends_out_of_order():
    h = H().txn(0, ("a", "x", 1), ("a", "x", 2)).txn(1, ("r", "x", [2, 1]))
    assert "incompatible-order" in kinds(h.result())


def test_lost_append():
    h = H().txn(0, ("a", "x", 1)).txn(1, ("a", "x", 2)).txn(2, ("r", "x", [1]))
    res = h.result(check.SERIAL)
    assert "lost-append" in kinds(res)
    assert res["anomalies"]["lost-append"][0]["values"] == [2]


def test_info_append_absent_is_not_lost():
    h = (H().inv(0, ("a", "x", 1)).info(0, ("a", "x", 1))
         .txn(1, ("a", "x", 2)).txn(2, ("r", "x", [2])))
    assert h.result()["valid"]


def test_info_append_present_is_fine():
    h = (H().inv(0, ("a", "x", 1)).info(0, ("a", "x", 1))
         .txn(1, ("a", "x", 2)).txn(2, ("r", "x", [2, 1])))
    assert h.result()["valid"]


def test_unfinished_invoke_is_info():
    h = H().txn(1, ("a", "x", 2)).inv(0, ("a", "x", 1)).txn(2, ("r", "x", [2, 1]))
    res = h.result()
    assert res["valid"] and res["stats"]["info"] == 1


def test_info_txn_in_cycle():
    # The info txn was observed, so it committed, and takes part in the graph.
    h = (H().inv(0, ("a", "x", 1), ("a", "y", 1))
         .txn(1, ("a", "x", 2), ("a", "y", 2))
         .info(0, ("a", "x", 1), ("a", "y", 1))
         .txn(2, ("r", "x", [1, 2]), ("r", "y", [2, 1])))
    assert "G0" in kinds(h.result())


def test_g0_write_cycle():
    h = (H().inv(0, ("a", "x", 1), ("a", "y", 1)).inv(1, ("a", "x", 2), ("a", "y", 2))
         .ok(0, ("a", "x", 1), ("a", "y", 1)).ok(1, ("a", "x", 2), ("a", "y", 2))
         .txn(2, ("r", "x", [1, 2]), ("r", "y", [2, 1])))
    res = h.result(check.SERIAL)
    assert kinds(res) == {"G0"}
    cyc = res["anomalies"]["G0"][0]
    assert {c["index"] for c in cyc["cycle"]} == {0, 1}
    assert all(e["type"] == "ww" for e in cyc["edges"])


def test_g1c_circular_information_flow():
    # T0 reads T1's y and T1 reads T0's x.
    h = (H().inv(0, ("a", "x", 1), ("r", "y", None)).inv(1, ("a", "y", 1), ("r", "x", None))
         .ok(0, ("a", "x", 1), ("r", "y", [1])).ok(1, ("a", "y", 1), ("r", "x", [1])))
    res = h.result(check.SERIAL)
    assert kinds(res) == {"G1c"}
    assert {e["type"] for e in res["anomalies"]["G1c"][0]["edges"]} == {"wr"}


def test_g_single_read_skew():
    # T2 sees T1's y but not T1's x.
    h = (H().txn(0, ("a", "x", 1), ("a", "y", 1))
         .inv(2, ("r", "x", None), ("r", "y", None))
         .txn(1, ("a", "x", 2), ("a", "y", 2))
         .ok(2, ("r", "x", [1]), ("r", "y", [1, 2]))
         .txn(3, ("r", "x", [1, 2]), ("r", "y", [1, 2])))
    res = h.result(check.SERIAL)
    assert kinds(res) == {"G-single"}
    edges = res["anomalies"]["G-single"][0]["edges"]
    assert sum(e["type"] == "rw" for e in edges) == 1


def test_g2_write_skew():
    h = (H().inv(0, ("r", "x", None), ("a", "y", 1)).inv(1, ("r", "y", None), ("a", "x", 1))
         .ok(0, ("r", "x", []), ("a", "y", 1)).ok(1, ("r", "y", []), ("a", "x", 1))
         .txn(2, ("r", "x", [1]), ("r", "y", [1])))
    res = h.result(check.SERIAL)
    assert kinds(res) == {"G2-item"}
    assert sum(e["type"] == "rw" for e in res["anomalies"]["G2-item"][0]["edges"]) == 2


def test_stale_read_realtime_only():
    # Serializable, but a read that began after an acknowledged append misses it.
    h = (H().txn(0, ("a", "x", 1)).txn(1, ("a", "x", 2))
         .txn(2, ("r", "x", [1])).txn(3, ("r", "x", [1, 2])))
    assert h.result(check.SERIAL)["valid"]
    res = h.result(check.STRICT)
    assert "G-single-realtime" in kinds(res)
    assert "lost-append" not in kinds(res)  # a later read does show it


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _run_cli(tmp_path, lines, *args):
    p = tmp_path / "h.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, CHECK_PY, str(p), *args], capture_output=True, text=True)


def test_cli_exit_codes(tmp_path):
    good = H().txn(0, ("a", "x", 1)).txn(1, ("r", "x", [1])).lines
    r = _run_cli(tmp_path, good)
    assert r.returncode == 0 and "VALID" in r.stdout
    bad = H().txn(0, ("a", "x", 1), typ="fail").txn(1, ("r", "x", [1])).lines
    r = _run_cli(tmp_path, bad, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["valid"] is False and "G1a" in out["anomalies"]
    r = _run_cli(tmp_path, bad, "--consistency", "serializable")
    assert r.returncode == 1 and "G1a" in r.stdout


@pytest.mark.parametrize("lines", [
    ["not json"],
    ['{"type":"ok","process":0,"value":[["r","x",[]]]}'],  # no invocation
    ['{"type":"invoke","process":0,"value":[["write","x",1]]}'],
    ['{"type":"invoke","process":0,"value":[["r","x",null]]}',
     '{"type":"ok","process":0,"value":[["r","x",null]]}'],  # ok read without a list
    ['{"type":"invoke","process":0,"value":[["append","x",1]]}',
     '{"type":"invoke","process":0,"value":[["append","x",2]]}'],
    ['{"type":"invoke","process":0,"value":[["append","x",1]]}',
     '{"type":"ok","process":0,"value":[["append","x",2]]}'],
])
def test_cli_malformed(tmp_path, lines):
    assert _run_cli(tmp_path, lines).returncode == 2


def test_edn_style_keywords_accepted():
    lines = [
        '{"index":1,"type":":invoke","process":0,"f":":txn","value":[[":append","x",1]]}',
        '{"index":2,"type":":ok","process":0,"f":":txn","value":[[":append","x",1]]}',
        '{"index":3,"type":"invoke","process":1,"value":[[":r","x",null]]}',
        '{"index":4,"type":"ok","process":1,"value":[[":r","x",[1]]]}',
    ]
    assert check.check_lines(lines)["valid"]


# --------------------------------------------------------------------------
# Brute-force oracle (independent of check.py)
# --------------------------------------------------------------------------

def brute_force_valid(lines, strict):
    """Is there a serial order of the committed txns that explains every ok read?

    ok txns must all be in the order; each info txn may or may not be; fail
    txns never are. Under strict serializability, a txn that completed before
    another was invoked must come first.
    """
    open_, done = {}, []
    for pos, line in enumerate(lines):
        ev = json.loads(line)
        p = ev["process"]
        if ev["type"] == "invoke":
            open_[p] = {"ops": ev["value"], "inv": pos, "end": None, "type": None}
        else:
            t = open_.pop(p)
            t["type"] = ev["type"]
            if ev["type"] == "ok":
                t["ops"] = ev["value"]
                t["end"] = pos
            done.append(t)
    for t in open_.values():
        t["type"] = "info"
        done.append(t)
    oks = [t for t in done if t["type"] == "ok"]
    infos = [t for t in done if t["type"] == "info"]

    def must_precede(a, b):
        return strict and a["end"] is not None and a["end"] < b["inv"]

    def search(chosen):
        n = len(chosen)
        for perm in itertools.permutations(range(n)):
            placed = set()
            state = {}
            good = True
            for i in perm:
                t = chosen[i]
                if any(must_precede(chosen[j], t) for j in range(n) if j not in placed):
                    good = False
                    break
                for f, k, v in t["ops"]:
                    if f == "append":
                        state.setdefault(k, []).append(v)
                    elif t["type"] == "ok" and state.get(k, []) != v:
                        good = False
                        break
                if not good:
                    break
                placed.add(i)
            if good:
                return True
        return False

    for r in range(len(infos) + 1):
        for subset in itertools.combinations(infos, r):
            if search(oks + list(subset)):
                return True
    return False


@st.composite
def small_histories(draw, max_txns=5):
    n = draw(st.integers(1, max_txns))
    keys = ["x", "y"][: draw(st.integers(1, 2))]
    state = {k: [] for k in keys}
    next_val = 1
    txns = []
    for i in range(n):
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "ok", "fail", "info"]))
        applied = outcome == "ok" or (outcome == "info" and draw(st.booleans()))
        local = {k: list(v) for k, v in state.items()}
        ops = []
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.sampled_from(keys))
            if draw(st.booleans()):
                ops.append(["append", k, next_val])
                local[k].append(next_val)
                next_val += 1
            else:
                ops.append(["r", k, list(local[k])])
        if applied:
            state = local
        commit = 10 * i
        inv = commit - draw(st.integers(0, 25))
        end = commit + draw(st.integers(1, 25))
        txns.append({"type": outcome, "ops": ops, "inv": inv, "end": end})

    mutation = draw(st.sampled_from(
        [None, None, "drop", "truncate", "prefix", "prefix", "swap", "dup", "foreign", "empty",
         "flip", "time", "time"]))
    reads = [(t, o) for t in txns if t["type"] == "ok" for o in t["ops"] if o[0] == "r"]
    if mutation in ("drop", "truncate", "prefix", "swap", "dup", "foreign", "empty") and reads:
        t, o = draw(st.sampled_from(reads))
        lst = o[2]
        if mutation == "drop" and lst:
            del lst[draw(st.integers(0, len(lst) - 1))]
        elif mutation == "truncate" and lst:
            lst.pop()
        elif mutation == "prefix" and lst:  # a stale read
            del lst[draw(st.integers(0, len(lst) - 1)):]
        elif mutation == "swap" and len(lst) >= 2:
            i = draw(st.integers(0, len(lst) - 2))
            lst[i], lst[i + 1] = lst[i + 1], lst[i]
        elif mutation == "dup" and lst:
            lst.append(draw(st.sampled_from(lst)))
        elif mutation == "foreign":
            vals = [a[2] for tt in txns for a in tt["ops"] if a[0] == "append" and a[1] == o[1]]
            if vals:
                lst.append(draw(st.sampled_from(vals)))
        elif mutation == "empty":
            lst.clear()
    elif mutation == "flip":
        t = draw(st.sampled_from(txns))
        t["type"] = draw(st.sampled_from(["ok", "fail", "info"]))
    elif mutation == "time":
        t = draw(st.sampled_from(txns))
        t["inv"] = draw(st.integers(-30, 10 * n + 30))
        t["end"] = t["inv"] + draw(st.integers(1, 40))

    # Lay out events in time order and give each process sequential txns.
    events = []
    for i, t in enumerate(txns):
        events.append((t["inv"], 1, i))
        events.append((t["end"], 0, i))
    events.sort()
    busy_until = {}  # process -> completion time, None = retired
    proc_of = {}
    next_proc = 0
    lines = []
    for when, kind, i in events:
        t = txns[i]
        if kind == 1:
            free = [p for p, u in busy_until.items() if u is not None and u < when]
            if free:
                p = min(free)
            else:
                p = next_proc
                next_proc += 1
            proc_of[i] = p
            busy_until[p] = t["end"]
            value = [[f, k, None if f == "r" else v] for f, k, v in t["ops"]]
            typ = "invoke"
        else:
            p = proc_of[i]
            if t["type"] == "info":
                busy_until[p] = None
                if draw(st.booleans()):
                    continue  # never completed at all
            typ = t["type"]
            value = t["ops"] if typ == "ok" else [[f, k, None if f == "r" else v] for f, k, v in t["ops"]]
        lines.append(json.dumps({"index": len(lines), "time": when, "type": typ,
                                 "process": p, "f": "txn", "value": value}))
    return lines


DIFF_SETTINGS = settings(max_examples=4000, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


def _checker_says_valid(lines, consistency):
    res = check.check_lines(lines, consistency)
    found = set(res["anomalies"])
    if consistency == check.SERIAL:
        # "lost-append" is a durability check on reads that began after the ack;
        # plain serializability allows such a stale read, so the oracle does not.
        found.discard("lost-append")
    return not found, res


@DIFF_SETTINGS
@given(small_histories())
def test_differential_strict(lines):
    got, res = _checker_says_valid(lines, check.STRICT)
    want = brute_force_valid(lines, strict=True)
    assert got == want, ("\n".join(lines), res["anomalies"])


@DIFF_SETTINGS
@given(small_histories())
def test_differential_serializable(lines):
    got, res = _checker_says_valid(lines, check.SERIAL)
    want = brute_force_valid(lines, strict=False)
    assert got == want, ("\n".join(lines), res["anomalies"])


def test_oracle_sanity():
    bad = H().inv(0, ("r", "x", None), ("a", "y", 1)).inv(1, ("r", "y", None), ("a", "x", 1)) \
        .ok(0, ("r", "x", []), ("a", "y", 1)).ok(1, ("r", "y", []), ("a", "x", 1)) \
        .txn(2, ("r", "x", [1]), ("r", "y", [1]))
    assert not brute_force_valid(bad.lines, strict=False)
    good = H().txn(0, ("a", "x", 1)).txn(1, ("r", "x", [1]))
    assert brute_force_valid(good.lines, strict=True)


# --------------------------------------------------------------------------
# Scale: a 20k-transaction valid history
# --------------------------------------------------------------------------

def generate_valid_history(n_txns, seed=7, n_procs=8, active_keys=12, max_writes=64):
    rng = random.Random(seed)
    state = {}
    writes = {}
    active = []
    next_key = 0
    next_val = 0

    def fresh_key():
        nonlocal next_key
        k = f"s{next_key % 4}/k{next_key}"
        next_key += 1
        state[k] = []
        writes[k] = 0
        return k

    for _ in range(active_keys):
        active.append(fresh_key())
    txns = []
    for i in range(n_txns):
        ops = []
        for _ in range(rng.randint(1, 4)):
            slot = rng.randrange(len(active))
            k = active[slot]
            if rng.random() < 0.5:
                ops.append(["r", k, list(state[k])])
            else:
                next_val += 1
                ops.append(["append", k, next_val])
                state[k].append(next_val)
                writes[k] += 1
                if writes[k] >= max_writes:
                    active[slot] = fresh_key()
        commit = 10 * i
        txns.append((commit - rng.randint(0, 35), commit + rng.randint(1, 35), ops))
    t_end = 10 * n_txns + 100
    for j, k in enumerate(sorted(state)):  # final reads of every key
        txns.append((t_end + 2 * j, t_end + 2 * j + 1, [["r", k, list(state[k])]]))
    events = []
    for i, (a, b, _ops) in enumerate(txns):
        events.append((a, 1, i))
        events.append((b, 0, i))
    events.sort()
    busy = {}
    proc_of = {}
    lines = []
    for when, kind, i in events:
        ops = txns[i][2]
        if kind == 1:
            free = [p for p, u in busy.items() if u < when]
            p = min(free) if free else len(busy)
            busy[p] = txns[i][1]
            proc_of[i] = p
            typ, value = "invoke", [[f, k, None if f == "r" else v] for f, k, v in ops]
        else:
            p, typ, value = proc_of[i], "ok", ops
        lines.append(json.dumps({"index": len(lines), "time": when * 1000, "type": typ,
                                 "process": p, "f": "txn", "value": value}))
    return lines


def test_20k_valid_history_timing(tmp_path):
    lines = generate_valid_history(20000)
    path = tmp_path / "h20k.jsonl"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    r = subprocess.run([sys.executable, CHECK_PY, str(path)], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    print(f"\n20k-txn history ({len(lines)} events) checked in {elapsed:.2f}s: {r.stdout.strip()}")
    assert r.returncode == 0, r.stdout + r.stderr
