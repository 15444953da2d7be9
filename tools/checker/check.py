#!/usr/bin/env python3
"""Independent checker for Jepsen-shaped list-append histories (JSON Lines).

See README.md in this directory for the accepted format and the checks.
Exit status: 0 valid, 1 anomalies found, 2 malformed input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict, deque

import networkx as nx

STRICT = "strict-serializable"
SERIAL = "serializable"
EVENT_TYPES = ("invoke", "ok", "fail", "info")
# Preference when one graph edge carries several dependency kinds: pick the
# "weakest" explanation so cycles are classified as mildly as possible.
EDGE_PREFERENCE = ("ww", "wr", "process", "realtime", "rw")
REALTIME_KINDS = {"realtime", "process"}
MAX_WITNESSES_PRINTED = 10


class MalformedHistory(Exception):
    pass


class Txn:
    """One transaction: an invocation paired with its completion."""

    __slots__ = ("id", "process", "type", "ops", "invoke_pos", "complete_pos")

    def __init__(self, tid, process, ttype, ops, invoke_pos, complete_pos):
        self.id = tid
        self.process = process
        self.type = ttype
        self.ops = ops  # list of (f, key, value); f in {"append", "r"}
        self.invoke_pos = invoke_pos
        self.complete_pos = complete_pos  # None: never completed (info)

    def summary(self):
        out = []
        for f, k, v in self.ops:
            out.append([f, k, v])
        return {"index": self.id, "process": self.process, "type": self.type, "value": out}

    def short(self):
        ops = " ".join(
            f"{f}({k},{json.dumps(v)})" for f, k, v in self.ops
        )
        return f"T{self.id}[p{self.process} {self.type}: {ops}]"


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

def _scalar(x):
    return isinstance(x, (int, str)) and not isinstance(x, bool)


def _norm_f(f, where):
    if not isinstance(f, str):
        raise MalformedHistory(f"{where}: micro-op function must be a string")
    name = f[1:] if f.startswith(":") else f
    if name not in ("append", "r"):
        raise MalformedHistory(f"{where}: unknown micro-op {f!r}")
    return name


def _parse_ops(value, where, reads_filled):
    if not isinstance(value, list) or not value:
        raise MalformedHistory(f"{where}: value must be a non-empty list of micro-ops")
    ops = []
    for i, mop in enumerate(value):
        w = f"{where} micro-op {i}"
        if not isinstance(mop, list) or len(mop) != 3:
            raise MalformedHistory(f"{w}: must be [f, key, value]")
        f = _norm_f(mop[0], w)
        k, v = mop[1], mop[2]
        if not _scalar(k):
            raise MalformedHistory(f"{w}: key must be a string or integer")
        if f == "append":
            if not _scalar(v):
                raise MalformedHistory(f"{w}: appended value must be a string or integer")
        else:
            if v is None:
                if reads_filled:
                    raise MalformedHistory(f"{w}: an ok completion must carry the read list")
            elif isinstance(v, list):
                if not all(_scalar(x) for x in v):
                    raise MalformedHistory(f"{w}: read list elements must be strings or integers")
                v = list(v)
            else:
                raise MalformedHistory(f"{w}: read value must be null or a list")
        ops.append((f, k, v))
    return ops


def parse_history(lines):
    """Parse JSON lines into a list of Txn (ordered by invocation)."""
    pending = {}
    txns = []
    seen_index = set()
    pos = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {lineno}"
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as e:
            raise MalformedHistory(f"{where}: invalid JSON ({e})") from None
        if not isinstance(ev, dict):
            raise MalformedHistory(f"{where}: event must be a JSON object")
        etype = ev.get("type")
        if isinstance(etype, str) and etype.startswith(":"):
            etype = etype[1:]
        if etype not in EVENT_TYPES:
            raise MalformedHistory(f"{where}: type must be one of {EVENT_TYPES}")
        proc = ev.get("process")
        if not _scalar(proc):
            raise MalformedHistory(f"{where}: process must be an integer or string")
        f = ev.get("f", "txn")
        if f not in ("txn", ":txn"):
            raise MalformedHistory(f"{where}: f must be \"txn\"")
        idx = ev.get("index", lineno)
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise MalformedHistory(f"{where}: index must be an integer")
        if idx in seen_index:
            raise MalformedHistory(f"{where}: duplicate index {idx}")
        seen_index.add(idx)
        if "time" in ev and (not isinstance(ev["time"], (int, float)) or isinstance(ev["time"], bool)):
            raise MalformedHistory(f"{where}: time must be a number")
        pos += 1
        if etype == "invoke":
            if proc in pending:
                raise MalformedHistory(f"{where}: process {proc} invoked while its previous op is still open")
            ops = _parse_ops(ev.get("value"), where, reads_filled=False)
            for fn, _, v in ops:
                if fn == "r" and v is not None:
                    raise MalformedHistory(f"{where}: reads in an invocation must be null")
            t = Txn(idx, proc, None, ops, pos, None)
            pending[proc] = t
            txns.append(t)
            continue
        t = pending.pop(proc, None)
        if t is None:
            raise MalformedHistory(f"{where}: {etype} completion for process {proc} without an open invocation")
        if etype == "ok":
            ops = _parse_ops(ev.get("value"), where, reads_filled=True)
        elif ev.get("value") is not None:
            ops = _parse_ops(ev.get("value"), where, reads_filled=False)
        else:
            ops = t.ops
        if len(ops) != len(t.ops) or any(
            a[0] != b[0] or a[1] != b[1] or (a[0] == "append" and a[2] != b[2])
            for a, b in zip(ops, t.ops)
        ):
            raise MalformedHistory(f"{where}: completion value does not match its invocation")
        t.type = etype
        if etype == "ok":
            t.ops = ops
            t.complete_pos = pos
        elif etype == "fail":
            t.complete_pos = pos
        else:  # info: outcome unknown, it may take effect at any later time
            t.complete_pos = None
    for t in pending.values():  # never completed: indeterminate
        t.type = "info"
    return txns


# --------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------

class Graph:
    def __init__(self):
        self.g = nx.DiGraph()

    def add(self, a, b, kind, why):
        if a is b:
            return
        if self.g.has_edge(a.id, b.id):
            kinds = self.g[a.id][b.id]["kinds"]
            kinds.setdefault(kind, why)
        else:
            self.g.add_edge(a.id, b.id, kinds={kind: why})


def _filtered(g, nodes, allowed):
    return nx.subgraph_view(
        g,
        filter_node=lambda n: n in nodes,
        filter_edge=lambda a, b: not allowed.isdisjoint(g[a][b]["kinds"]),
    )


def _cycle_in(sub):
    """Return some short cycle (list of nodes, first != last) or None."""
    for scc in nx.strongly_connected_components(sub):
        if len(scc) < 2:
            continue
        start = min(scc)
        prev = {start: None}
        queue = deque([start])
        while queue:
            n = queue.popleft()
            for m in sub.successors(n):
                if m == start:
                    path = [n]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path))
                if m in scc and m not in prev:
                    prev[m] = n
                    queue.append(m)
    return None


def _single_rw_cycle(g, nodes, others):
    """A cycle with exactly one rw edge: rw a->b plus a path b->a over `others`."""
    sub = _filtered(g, nodes, others)
    tries = 0
    for a in sorted(nodes):
        for b in g.successors(a):
            if b not in nodes or "rw" not in g[a][b]["kinds"]:
                continue
            tries += 1
            if tries > 2000:
                return None
            try:
                path = nx.shortest_path(sub, b, a)
            except nx.NetworkXNoPath:
                continue
            return [a] + path[:-1]
    return None


def _describe_cycle(g, cycle, allowed, txn_by_id, forced_rw_first=False):
    edges = []
    n = len(cycle)
    for i in range(n):
        a, b = cycle[i], cycle[(i + 1) % n]
        kinds = g[a][b]["kinds"]
        if forced_rw_first and i == 0:
            kind = "rw"
        else:
            kind = next(k for k in EDGE_PREFERENCE if k in kinds and k in allowed
                        and not (forced_rw_first and k == "rw"))
        edges.append({"from": a, "to": b, "type": kind, "why": kinds[kind]})
    n_rw = sum(e["type"] == "rw" for e in edges)
    has_wr = any(e["type"] == "wr" for e in edges)
    has_rt = any(e["type"] in REALTIME_KINDS for e in edges)
    if n_rw == 0:
        name = "G1c" if has_wr else "G0"
    elif n_rw == 1:
        name = "G-single"
    else:
        name = "G2-item"
    if has_rt:
        name += "-realtime"
    return {
        "type": name,
        "cycle": [txn_by_id[x].summary() for x in cycle],
        "edges": edges,
    }


def find_cycles(g, txn_by_id, strict):
    """Classify every strongly connected component by its mildest cycle."""
    results = []
    data_levels = [{"ww"}, {"ww", "wr"}, None, {"ww", "wr", "rw"}]
    extra_sets = [set()] + ([set(REALTIME_KINDS)] if strict else [])
    for scc in nx.strongly_connected_components(g.g):
        if len(scc) < 2:
            continue
        found = None
        for extra in extra_sets:
            for level in data_levels:
                if level is None:
                    others = {"ww", "wr"} | extra
                    cyc = _single_rw_cycle(g.g, scc, others)
                    if cyc:
                        found = _describe_cycle(g.g, cyc, others | {"rw"}, txn_by_id, forced_rw_first=True)
                else:
                    allowed = level | extra
                    cyc = _cycle_in(_filtered(g.g, scc, allowed))
                    if cyc:
                        found = _describe_cycle(g.g, cyc, allowed, txn_by_id)
                if found:
                    break
            if found:
                break
        if found is None:  # cannot happen: the SCC itself has a cycle
            cyc = _cycle_in(_filtered(g.g, scc, set(EDGE_PREFERENCE)))
            found = _describe_cycle(g.g, cyc, set(EDGE_PREFERENCE), txn_by_id)
        found["scc_size"] = len(scc)
        results.append(found)
    return results


def check(txns, consistency=STRICT):
    """Return {"valid": bool, "anomalies": {type: [witness, ...]}, "stats": {...}}."""
    strict = consistency == STRICT
    anomalies = defaultdict(list)
    txn_by_id = {t.id: t for t in txns}

    # Who appended what (appends must be unique per key).
    writer = {}
    appends_of = defaultdict(lambda: defaultdict(list))  # txn id -> key -> [values]
    for t in txns:
        for f, k, v in t.ops:
            if f != "append":
                continue
            if (k, v) in writer:
                anomalies["duplicate-appends"].append({
                    "key": k, "value": v,
                    "txns": [writer[(k, v)].summary(), t.summary()],
                })
                continue
            writer[(k, v)] = t
            appends_of[t.id][k].append(v)

    oks = [t for t in txns if t.type == "ok"]

    # Internal consistency, duplicate elements, external reads.
    reads_by_key = defaultdict(list)  # key -> [(txn, list)]
    ext_reads = []  # (txn, key, list-as-seen-before-own-appends)
    for t in oks:
        state = {}  # key -> (known_full, list)
        first_read_done = set()
        own_later = {(k, v) for f, k, v in t.ops if f == "append"}
        for i, (f, k, v) in enumerate(t.ops):
            if f == "append":
                own_later.discard((k, v))
                known, lst = state.get(k, (False, []))
                state[k] = (known, lst + [v])
                continue
            if len(set(v)) != len(v):
                dups = sorted({x for x in v if v.count(x) > 1}, key=str)
                anomalies["duplicate-elements"].append({
                    "key": k, "duplicates": dups, "read": v, "txn": t.summary(), "op": i,
                })
            known, lst = state.get(k, (False, []))
            future = [x for x in v if (k, x) in own_later]
            if future:
                anomalies["internal"].append({
                    "key": k, "op": i, "read": v, "reads_own_later_appends": future,
                    "txn": t.summary(),
                })
                first_read_done.add(k)
                continue
            if known:
                good = v == lst
            else:
                good = len(v) >= len(lst) and v[len(v) - len(lst):] == lst
            if not good:
                anomalies["internal"].append({
                    "key": k, "op": i, "read": v,
                    "expected": lst if known else {"ends_with": lst},
                    "txn": t.summary(),
                })
            elif k not in first_read_done:
                ext_reads.append((t, k, v[: len(v) - len(lst)]))
            first_read_done.add(k)
            state[k] = (True, list(v))
            reads_by_key[k].append((t, v))

    # Read values: unknown (garbage), aborted (G1a), intermediate (G1b).
    bad_keys = set()
    for k, reads in reads_by_key.items():
        for t, v in reads:
            for x in v:
                w = writer.get((k, x))
                if w is None:
                    anomalies["garbage-read"].append({"key": k, "value": x, "read": v, "reader": t.summary()})
                    bad_keys.add(k)
                elif w.type == "fail":
                    anomalies["G1a"].append({
                        "key": k, "value": x, "read": v,
                        "reader": t.summary(), "failed_writer": w.summary(),
                    })
            if len(set(v)) != len(v):
                bad_keys.add(k)
    for t, k, ext in ext_reads:
        if not ext:
            continue
        w = writer.get((k, ext[-1]))
        if w is None or w is t:
            continue
        final = appends_of[w.id][k][-1]
        if ext[-1] != final:
            anomalies["G1b"].append({
                "key": k, "value": ext[-1], "writer_final_value": final, "read": ext,
                "reader": t.summary(), "writer": w.summary(),
            })

    # Version orders: every read of a key must be a prefix of the longest one.
    order = {}
    for k, reads in reads_by_key.items():
        longest_t, longest = max(reads, key=lambda r: len(r[1]))
        for t, v in reads:
            if longest[: len(v)] != v:
                anomalies["incompatible-order"].append({
                    "key": k, "reads": [v, longest],
                    "txns": [t.summary(), longest_t.summary()],
                })
                bad_keys.add(k)
                break
        if k not in bad_keys:
            order[k] = longest
    all_keys = {k for (k, _v) in writer}
    for k in all_keys:
        if k not in reads_by_key:
            order[k] = []

    # Committed transactions: ok ones, plus info ones whose effects were observed.
    pos = {k: {x: i for i, x in enumerate(o)} for k, o in order.items()}
    observed_info = set()
    for k, o in order.items():
        for x in o:
            w = writer.get((k, x))
            if w is not None and w.type == "info":
                observed_info.add(w.id)
    committed = [t for t in txns if t.type == "ok" or t.id in observed_info]
    committed_ids = {t.id for t in committed}

    # Each transaction's appends to a key must show up in its own order,
    # with no later append visible while an earlier one is missing.
    for t in committed:
        for k, vals in appends_of[t.id].items():
            if k not in pos:
                continue
            ps = [pos[k].get(v) for v in vals]
            seen = [p for p in ps if p is not None]
            prefix_ok = all(p is not None for p in ps[: len(seen)])
            if not prefix_ok or seen != sorted(seen):
                anomalies["incompatible-order"].append({
                    "key": k, "reason": "a transaction's appends are visible out of order or partially",
                    "appends": vals, "order": order[k], "txn": t.summary(),
                })

    # Lost acknowledged appends: an ok append missing from a read that began
    # after the append was acknowledged (the final reads satisfy this).
    latest_read_start = {}
    for k, reads in reads_by_key.items():
        latest_read_start[k] = max(reads, key=lambda r: r[0].invoke_pos)
    for t in oks:
        for k, vals in appends_of[t.id].items():
            if k not in latest_read_start:
                continue
            rt, rv = latest_read_start[k]
            if rt.invoke_pos < t.complete_pos:
                continue
            missing = [v for v in vals if v not in rv]
            if missing:
                anomalies["lost-append"].append({
                    "key": k, "values": missing, "writer": t.summary(),
                    "later_read": rv, "reader": rt.summary(),
                })

    # Dependency graph.
    appends_by_key = defaultdict(list)
    for (k, v), w in writer.items():
        appends_by_key[k].append((v, w))
    ext_by_key = defaultdict(list)
    for t, k, ext in ext_reads:
        ext_by_key[k].append((t, ext))
    g = Graph()
    for t in committed:
        g.g.add_node(t.id)
    for k, o in order.items():
        ws = [writer.get((k, x)) for x in o]
        for i in range(len(o) - 1):
            a, b = ws[i], ws[i + 1]
            if a is not None and b is not None and a.id in committed_ids and b.id in committed_ids:
                g.add(a, b, "ww", f"{k}: {o[i]!r} then {o[i + 1]!r}")
        unobserved = sorted(
            {w.id for v, w in appends_by_key.get(k, ()) if w.id in committed_ids and v not in pos[k]}
        )
        unobserved = [txn_by_id[x] for x in unobserved]
        if o and ws[-1] is not None and ws[-1].id in committed_ids:
            for u in unobserved:
                g.add(ws[-1], u, "ww", f"{k}: {o[-1]!r} then unobserved appends of T{u.id}")
        o_writers = ws
        if k in bad_keys:
            continue
        for t, ext in ext_by_key.get(k, ()):
            n = len(ext)
            if n:
                w = o_writers[n - 1]
                if w is not None and w.id in committed_ids:
                    g.add(w, t, "wr", f"{k}: read {ext!r} ends with {ext[-1]!r}")
            if n < len(o):
                w = o_writers[n]
                if w is not None and w.id in committed_ids:
                    g.add(t, w, "rw", f"{k}: read {ext!r} misses {o[n]!r}")
            else:
                for u in unobserved:
                    g.add(t, u, "rw", f"{k}: read {ext!r} misses unobserved appends of T{u.id}")

    if strict:
        # Realtime edges (transitively reduced by a sweep), and process order.
        events = []
        for t in committed:
            events.append((t.invoke_pos, 1, t))
            if t.complete_pos is not None:
                events.append((t.complete_pos, 0, t))
        events.sort(key=lambda e: (e[0], e[1]))
        frontier = set()
        preds = {}
        for _p, kind, t in events:
            if kind == 1:
                preds[t.id] = list(frontier)
                for a in preds[t.id]:
                    g.add(txn_by_id[a], t, "realtime", f"T{a} completed before T{t.id} began")
            else:
                frontier.difference_update(preds.get(t.id, ()))
                frontier.add(t.id)
        by_proc = defaultdict(list)
        for t in committed:
            by_proc[t.process].append(t)
        for ts in by_proc.values():
            ts.sort(key=lambda t: t.invoke_pos)
            for a, b in zip(ts, ts[1:]):
                g.add(a, b, "process", f"process {a.process}: T{a.id} then T{b.id}")

    for cyc in find_cycles(g, txn_by_id, strict):
        anomalies[cyc["type"]].append(cyc)

    stats = {
        "transactions": len(txns),
        "ok": len(oks),
        "fail": sum(t.type == "fail" for t in txns),
        "info": sum(t.type == "info" for t in txns),
        "committed_in_graph": len(committed),
        "keys": len(all_keys | set(reads_by_key)),
        "graph_edges": g.g.number_of_edges(),
    }
    return {
        "valid": not anomalies,
        "consistency": consistency,
        "anomalies": dict(anomalies),
        "stats": stats,
    }


def check_lines(lines, consistency=STRICT):
    return check(parse_history(lines), consistency)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _print_text(result, elapsed, out):
    s = result["stats"]
    print(
        f"checked {s['transactions']} txns ({s['ok']} ok, {s['fail']} fail, {s['info']} info), "
        f"{s['keys']} keys, {s['graph_edges']} edges as {result['consistency']} in {elapsed:.2f}s",
        file=out,
    )
    if result["valid"]:
        print("VALID: no anomalies", file=out)
        return
    print("INVALID:", ", ".join(f"{k} x{len(v)}" for k, v in sorted(result["anomalies"].items())), file=out)
    for kind, ws in sorted(result["anomalies"].items()):
        for w in ws[:MAX_WITNESSES_PRINTED]:
            if "edges" in w:
                print(f"  {kind}: cycle of {len(w['cycle'])} txns (SCC of {w['scc_size']})", file=out)
                for txn, e in zip(w["cycle"], w["edges"]):
                    print(f"    T{txn['index']} p{txn['process']} {txn['type']} {json.dumps(txn['value'])}", file=out)
                    print(f"      -{e['type']}-> T{e['to']}   ({e['why']})", file=out)
            else:
                print(f"  {kind}: {json.dumps(w)}", file=out)
        if len(ws) > MAX_WITNESSES_PRINTED:
            print(f"  ... {len(ws) - MAX_WITNESSES_PRINTED} more {kind}", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check a list-append history (JSON Lines).")
    ap.add_argument("history", help="path to the history .jsonl file ('-' for stdin)")
    ap.add_argument("--consistency", choices=[STRICT, SERIAL], default=STRICT)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    start = time.monotonic()
    try:
        if args.history == "-":
            lines = sys.stdin.readlines()
        else:
            with open(args.history, encoding="utf-8") as fh:
                lines = fh.readlines()
        txns = parse_history(lines)
    except (OSError, UnicodeDecodeError, MalformedHistory) as e:
        if args.json:
            print(json.dumps({"valid": None, "error": str(e)}))
        else:
            print(f"MALFORMED: {e}", file=sys.stderr)
        return 2
    result = check(txns, args.consistency)
    elapsed = time.monotonic() - start
    if args.json:
        result["seconds"] = round(elapsed, 3)
        print(json.dumps(result))
    else:
        _print_text(result, elapsed, sys.stdout)
    return 0 if result["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
