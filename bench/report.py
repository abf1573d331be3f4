#!/usr/bin/env python3
"""Turns bench/run.sh's results.tsv into markdown tables (standard library only).

Input rows (tab-separated): round, API, tool, target, connections, req/s, p50 ms, p99 ms,
errors, server CPU % (of one CPU), load-side CPU busy %, server context switches per
request.

Output: a summary table with the median over rounds of each (API, connections, target)
and, when there was more than one round, every round's rows.

ratio        infermesh req/s / ceiling req/s, computed per round from the two measurements
             taken back to back at the same setting, then the median over rounds.
sat. ratio   the same, only over the rounds in which the ceiling server used at least
             SATURATED % of its CPU: otherwise the ceiling was held back by the load tool
             (or by other work on the machine) rather than by its own cost, and its req/s is
             no ceiling, which flatters the plain ratio. "n/a": no such round (always so
             at 1 connection, where a closed loop is bound by round trips, not by CPU).
req/CPU-s    req/s divided by the server's CPU use (in CPUs): the cost of a request, which
             holds up better than raw req/s when other work on the machine takes CPU from
             the server; "CPU-norm. ratio" is the same ratio computed on it.
cs/req       context switches (voluntary + involuntary, all the server's threads) per request.
"""

import statistics

SATURATED = 90
import sys
from collections import defaultdict


def num(s):
    try:
        return float(s)
    except ValueError:
        return float("nan")


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def per_cpu(row):
    cpu = row["server_cpu"] / 100
    return row["rps"] / cpu if cpu > 0 else float("nan")


def fmt(x, spec):
    return "n/a" if x != x else format(x, spec)


def main(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 12:
                continue
            rows.append(dict(round=int(p[0]), api=p[1], tool=p[2], target=p[3], conns=int(p[4]),
                             rps=num(p[5]), p50=num(p[6]), p99=num(p[7]), errors=int(num(p[8]) or 0),
                             server_cpu=num(p[9]), load_cpu=num(p[10]), cs=num(p[11])))
    groups = defaultdict(list)
    order = []
    for r in rows:
        key = (r["api"], r["conns"], r["target"])
        if key not in groups:
            order.append(key)
        groups[key].append(r)

    def ceiling_of(r):
        for c in groups.get((r["api"], r["conns"], "ceiling"), []):
            if c["round"] == r["round"]:
                return c
        return None

    def saturated(r):
        c = ceiling_of(r)
        return c is not None and c["server_cpu"] >= SATURATED

    def ratios(r):
        c = ceiling_of(r)
        if r["target"] == "ceiling" or c is None or not c["rps"] > 0:
            return float("nan"), float("nan")
        return r["rps"] / c["rps"], per_cpu(r) / per_cpu(c)

    rounds = len({r["round"] for r in rows})
    out = []
    out.append(f"Median of {rounds} round(s); ratio = infermesh / ceiling, paired per round.\n")
    out.append("| API | tool | target | conns | req/s | p50 ms | p99 ms | errors | ratio "
               "| sat. ratio | server CPU % | req/CPU-s | CPU-norm. ratio | cs/req |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in order:
        g = groups[key]
        rs = [ratios(r) for r in g]
        is_ceiling = key[2] == "ceiling"
        sat = [ratios(r)[0] for r in g if saturated(r)]
        sat_cell = "—" if is_ceiling else (
            f"{med(sat):.2f} ({len(sat)}/{len(g)})" if sat else f"n/a (0/{len(g)})")
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            key[0], g[0]["tool"], key[2], key[1],
            fmt(med([r["rps"] for r in g]), ".0f"),
            fmt(med([r["p50"] for r in g]), ".2f"),
            fmt(med([r["p99"] for r in g]), ".2f"),
            sum(r["errors"] for r in g),
            "—" if is_ceiling else fmt(med([x[0] for x in rs]), ".2f"),
            sat_cell,
            fmt(med([r["server_cpu"] for r in g]), ".0f"),
            fmt(med([per_cpu(r) for r in g]), ".0f"),
            "—" if is_ceiling else fmt(med([x[1] for x in rs]), ".2f"),
            fmt(med([r["cs"] for r in g]), ".2f"),
        ))
    if rounds > 1:
        out.append("\nEvery round:\n")
        out.append("| round | API | target | conns | req/s | p50 ms | p99 ms | errors | ratio "
                   "| server CPU % | load CPU busy % | cs/req |")
        out.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            ratio = "—" if r["target"] == "ceiling" else fmt(ratios(r)[0], ".2f")
            out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                r["round"], r["api"], r["target"], r["conns"], fmt(r["rps"], ".0f"),
                fmt(r["p50"], ".2f"), fmt(r["p99"], ".2f"), r["errors"], ratio,
                fmt(r["server_cpu"], ".0f"), fmt(r["load_cpu"], ".0f"), fmt(r["cs"], ".2f")))
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
