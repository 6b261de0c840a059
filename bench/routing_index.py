"""How fast SubscriptionIndex routes confirmations as subscriptions grow, against a linear scan.

Run ``python -m bench.routing_index``. It builds indexes of 1, 100, 1,000 and 10,000
subscriptions (each size a prefix of the same generated list, so the sets nest), matches a
fixed, pre-generated set of confirmations against each for a fixed time, and does the same
with the naive scan ``[s for s in active if s.filter.matches(c)]``. Everything is drawn from
one seeded RNG, so runs differ only by the machine. Prints a table and writes
``bench/results/routing_index.json``.

The workload, meant to look like a broker's subscriber base:

* confirmations: 5,000 accounts with skewed activity, 2,000 symbols with Zipf-like
  popularity, 15 venues, mostly BUY/SELL TRADEs, lot-sized quantities;
* subscriptions: ~70% name 1-3 accounts (some also symbols, sides, exec types or a minimum
  quantity), ~18% name symbols (some with venues), ~7% name venues, ~4% only sides/exec
  types/min_qty (e.g. a busts-and-corrections desk), ~1% match everything; ~10% paused.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from execdist.domain.model import Confirmation, ExecType, OrderStatus, Side
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import (
    CreateRequest,
    Filter,
    Subscription,
    SubscriptionStatus,
    hash_token,
    new_subscription,
)

SEED = 20240501
SIZES = (1, 100, 1_000, 10_000)
N_ACCOUNTS = 5_000
N_SYMBOLS = 2_000
VENUES = (
    "XNAS", "XNYS", "ARCX", "BATS", "BATY", "EDGA", "EDGX", "IEXG",
    "MEMX", "XBOS", "XPHL", "XCHI", "LTSE", "EPRL", "DARK",
)  # fmt: skip
N_CONFIRMATIONS = 20_000
PAUSED_SHARE = 0.10
VERIFY_FIRST = 300
"""Confirmations on which the index and the scan must return the same list."""
RESULTS = Path(__file__).resolve().parent / "results" / "routing_index.json"

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
_TOKEN_HASH = hash_token("bench")
_ACCOUNTS = [f"ACC-{i:05d}" for i in range(N_ACCOUNTS)]
_SYMBOLS = [f"SYM{i:04d}" for i in range(N_SYMBOLS)]


def make_confirmations(rng: random.Random, count: int) -> list[Confirmation]:
    account_weights = [1 / (rank + 1) ** 0.7 for rank in range(N_ACCOUNTS)]
    symbol_weights = [1 / (rank + 1) for rank in range(N_SYMBOLS)]
    venue_weights = [1 / (rank + 1) for rank in range(len(VENUES))]
    accounts = rng.choices(_ACCOUNTS, account_weights, k=count)
    symbols = rng.choices(_SYMBOLS, symbol_weights, k=count)
    venues = rng.choices(VENUES, venue_weights, k=count)
    sides = rng.choices(list(Side), [48, 45, 7], k=count)
    exec_types = rng.choices(list(ExecType), [96, 2, 2], k=count)
    confirmations = []
    for i in range(count):
        qty = Decimal(rng.choice((1, 5, 10, 50)) * rng.randint(1, 100))
        confirmations.append(
            Confirmation(
                confirmation_id=f"EX-{i}",
                exec_id=f"EX-{i}",
                order_id=f"ORD-{i // 4}",
                account=accounts[i],
                symbol=symbols[i],
                side=sides[i],
                venue=venues[i],
                exec_type=exec_types[i],
                ref_exec_id=None if exec_types[i] is ExecType.TRADE else f"EX-{i - 1}",
                seq=i % 4 + 1,
                last_qty=qty,
                last_px=Decimal("187.45"),
                cum_qty=qty,
                leaves_qty=Decimal(0),
                avg_px=Decimal("187.45"),
                order_qty=qty,
                order_status=OrderStatus.FILLED,
                exec_time=T0,
                confirmed_at=T0,
            )
        )
    return confirmations


def make_filter(rng: random.Random) -> Filter:
    def maybe(share: float, make: Callable[[], frozenset[str]]) -> frozenset[str]:
        return make() if rng.random() < share else frozenset()

    def some(pool: Sequence[str], low: int, high: int) -> Callable[[], frozenset[str]]:
        return lambda: frozenset(rng.sample(pool, rng.randint(low, high)))

    def sides() -> frozenset[Side]:
        return frozenset(rng.sample(list(Side), rng.randint(1, 2)))

    def exec_types() -> frozenset[ExecType]:
        return frozenset(rng.sample(list(ExecType), rng.randint(1, 2)))

    def min_qty() -> Decimal:
        return Decimal(rng.choice((100, 500, 1000)))

    kind = rng.random()
    if kind < 0.01:
        return Filter()
    if kind < 0.71:
        return Filter(
            accounts=some(_ACCOUNTS, 1, 3)(),
            symbols=maybe(0.15, some(_SYMBOLS, 1, 5)),
            sides=sides() if rng.random() < 0.1 else frozenset(),
            exec_types=exec_types() if rng.random() < 0.1 else frozenset(),
            min_qty=min_qty() if rng.random() < 0.1 else None,
        )
    if kind < 0.89:
        return Filter(
            symbols=some(_SYMBOLS, 1, 10)(),
            venues=maybe(0.2, some(VENUES, 1, 3)),
            sides=sides() if rng.random() < 0.1 else frozenset(),
            min_qty=min_qty() if rng.random() < 0.1 else None,
        )
    if kind < 0.96:
        return Filter(
            venues=some(VENUES, 1, 2)(),
            exec_types=exec_types() if rng.random() < 0.5 else frozenset(),
            min_qty=min_qty() if rng.random() < 0.3 else None,
        )
    return Filter(
        sides=sides() if rng.random() < 0.3 else frozenset(),
        exec_types=frozenset({ExecType.CORRECT, ExecType.BUST}),
        min_qty=min_qty() if rng.random() < 0.3 else None,
    )


def make_subscriptions(rng: random.Random, count: int) -> list[Subscription]:
    subscriptions = []
    for i in range(count):
        subscription = new_subscription(
            CreateRequest(name=f"bench {i}", filter=make_filter(rng)),
            subscription_id=f"sub-{i:05d}",
            token_hash=_TOKEN_HASH,
            now=T0,
        )
        if rng.random() < PAUSED_SHARE:
            subscription = apply_pause(subscription)
        subscriptions.append(subscription)
    return subscriptions


def apply_pause(subscription: Subscription) -> Subscription:
    return replace(subscription, status=SubscriptionStatus.PAUSED, version=2)


def run_for(
    seconds: float,
    confirmations: Sequence[Confirmation],
    match: Callable[[Confirmation], list[Subscription]],
) -> dict[str, float | None]:
    """Match confirmations in order, wrapping around, until ``seconds`` have passed."""
    matched = done = 0
    chunk = 50
    gc_was_enabled = gc.isenabled()
    gc.disable()  # like timeit: measure matching, not collections triggered by earlier work
    try:
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            offset = done % len(confirmations)
            for confirmation in confirmations[offset : offset + chunk]:
                matched += len(match(confirmation))
                done += 1
            elapsed = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "confirmations": done,
        "seconds": round(elapsed, 4),
        "confirmations_per_s": round(done / elapsed, 1),
        "us_per_confirmation": round(elapsed / done * 1e6, 3),
        "avg_matches": round(matched / done, 3),
        "us_per_match": round(elapsed / matched * 1e6, 3) if matched else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing_index", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="time per measurement (default 2)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)

    rng = random.Random(SEED)
    confirmations = make_confirmations(rng, N_CONFIRMATIONS)
    all_subscriptions = make_subscriptions(rng, max(SIZES))

    rows = []
    for size in SIZES:
        subscriptions = all_subscriptions[:size]
        start = time.perf_counter()
        index = SubscriptionIndex()
        for subscription in subscriptions:
            index.upsert(subscription)
        build_s = time.perf_counter() - start
        active = sorted((s for s in subscriptions if s.is_active), key=lambda s: s.id)

        def naive(c: Confirmation, active: list[Subscription] = active) -> list[Subscription]:
            return [s for s in active if s.filter.matches(c)]

        for confirmation in confirmations[:VERIFY_FIRST]:
            if index.match(confirmation) != naive(confirmation):
                raise AssertionError(f"index and scan disagree on {confirmation.exec_id}")

        indexed = run_for(args.seconds, confirmations, index.match)
        scanned = run_for(args.seconds, confirmations, naive)
        index_rate, scan_rate = indexed["confirmations_per_s"], scanned["confirmations_per_s"]
        assert index_rate is not None and scan_rate is not None
        row = {
            "subscriptions": size,
            "active": len(active),
            "build_ms": round(build_s * 1e3, 3),
            "index": indexed,
            "naive_scan": scanned,
            "speedup": round(index_rate / scan_rate, 1),
        }
        rows.append(row)
        print_row(row, header=size == SIZES[0])

    report = {
        "benchmark": "routing_index",
        "description": "confirmations matched per second by SubscriptionIndex vs a linear scan",
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "config": {
            "seed": SEED,
            "sizes": list(SIZES),
            "accounts": N_ACCOUNTS,
            "symbols": N_SYMBOLS,
            "venues": len(VENUES),
            "confirmations": N_CONFIRMATIONS,
            "paused_share": PAUSED_SHARE,
            "seconds_per_measurement": args.seconds,
        },
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")
    return 0


def print_row(row: dict[str, object], *, header: bool) -> None:
    if header:
        print(
            f"{'subs':>6} {'active':>6} {'build ms':>9} | {'index conf/s':>12} {'us/conf':>8} | "
            f"{'scan conf/s':>11} {'us/conf':>9} | {'matches/conf':>12} {'us/match':>8} "
            f"{'speedup':>8}"
        )
    indexed = row["index"]
    scanned = row["naive_scan"]
    assert isinstance(indexed, dict) and isinstance(scanned, dict)
    # Below one match per hundred confirmations the per-match cost is noise, not a figure.
    sparse = indexed["us_per_match"] is None or indexed["avg_matches"] < 0.01
    per_match = "-" if sparse else f"{indexed['us_per_match']:.3f}"
    print(
        f"{row['subscriptions']:>6} {row['active']:>6} {row['build_ms']:>9.1f} | "
        f"{indexed['confirmations_per_s']:>12,.0f} {indexed['us_per_confirmation']:>8.2f} | "
        f"{scanned['confirmations_per_s']:>11,.0f} {scanned['us_per_confirmation']:>9.1f} | "
        f"{indexed['avg_matches']:>12.2f} {per_match:>8} "
        f"{row['speedup']:>7.1f}x"
    )


if __name__ == "__main__":
    raise SystemExit(main())
