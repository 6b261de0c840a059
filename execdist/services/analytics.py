"""Analytics, the use case behind ``GET /api/v1/analytics``: each worker's own figures
(:class:`~execdist.domain.analytics.WindowedFigures`), counted once their transaction
committed, and gathered from every live worker by whichever one is asked.

Figures live in the memory of the worker that processed the confirmations: after a partition
moves, its earlier figures are still answered by the worker that had it, as long as that one
lives; a worker that dies takes its figures with it, and the windows fill again over their
length. Keeping windows in a changelogged store would survive that, at the price of several
table writes per confirmation on the hot path; the answer says which workers did not answer
(``partial``) rather than being silently short.

Prometheus: the last hour's executions and notional of the top :data:`TOP_N` keys of each
dimension, and one series ``key="other"`` for the rest, refreshed every 10 s. The label sets
stay bounded whatever the number of symbols, accounts or subscriptions: every label value is
a series Prometheus keeps, and accounts alone can run to the tens of thousands.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import aiohttp
import orjson
from mode import Service

from execdist.domain.analytics import (
    Dimension,
    Figures,
    Window,
    WindowedFigures,
    bucket_of_time,
    merge_windows,
)
from execdist.domain.fills import sum_exact
from execdist.domain.model import Confirmation
from execdist.metrics import Metrics
from execdist.services.worker_reports import WorkerReports
from execdist.settings import Settings

log = logging.getLogger(__name__)

TOP_N: Final = 20
FOLD_EVERY_S: Final = 1.0
"""How often committed confirmations are added to the figures, at the latest."""
FOLD_AT: Final = 20_000
"""Committed confirmations waiting to be added past which they are added at once."""
INTERNAL_PATH: Final = "/internal/v1/analytics"
FORWARDED_HEADER: Final = "X-Execdist-Forwarded-By"


_Recorded = tuple[Confirmation, tuple[str, ...], float | None]
"""A confirmation, the subscriptions it went to and its input's timestamp."""


class Analytics(Service):
    """This worker's figures: fed by the router inside transactions, counted at commit (a
    :class:`~execdist.runtime.commit.CommitFollower`), exported to Prometheus."""

    def __init__(
        self, metrics: Metrics, *, clock: Callable[[], float] = time.time, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics
        self._clock = clock
        self._figures = WindowedFigures()
        self._open: list[_Recorded] = []
        self._sealed: list[_Recorded] = []
        self._unfolded: list[tuple[float, list[_Recorded]]] = []
        """Committed confirmations not yet in :attr:`_figures`, with when each commit was
        applied: folded in together when the figures are read, every :data:`FOLD_EVERY_S`
        and past :data:`FOLD_AT`. A commit costs an append, and many commits' confirmations
        are summed per set of keys before they are added (a few confirmations per commit at
        a low rate would each be added to every one of their keys' figures)."""
        self._unfolded_count = 0
        self._exported: dict[tuple[str, str], set[str]] = {}

    def record(
        self,
        confirmation: Confirmation,
        subscriptions: tuple[str, ...],
        input_timestamp: float | None,
    ) -> None:
        self._open.append((confirmation, subscriptions, input_timestamp))

    def seal(self) -> None:
        self._sealed, self._open = self._open, []

    def aborted(self) -> None:
        self._open, self._sealed = [], []

    def committed(self) -> None:
        sealed, self._sealed = self._sealed, []
        if not sealed:
            return
        self._unfolded.append((self._clock(), sealed))
        self._unfolded_count += len(sealed)
        if self._unfolded_count >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Add the committed confirmations not added yet to the figures: those of the commits
        applied within one bucket together, each at its own commit's latency and the bucket
        of the last of them (the same figures as adding them commit by commit)."""
        unfolded, self._unfolded, self._unfolded_count = self._unfolded, [], 0
        group: list[tuple[Confirmation, tuple[str, ...], float]] = []
        group_at = 0.0
        for at, sealed in unfolded:
            if group and bucket_of_time(at) != bucket_of_time(group_at):
                self._figures.add_all(group_at, group)
                group = []
            group_at = at
            group.extend(
                (c, subscriptions, 0.0 if ts is None else max(at - ts, 0) * 1000)
                for c, subscriptions, ts in sealed
            )
        if group:
            self._figures.add_all(group_at, group)

    @property
    def figures_waiting(self) -> int:
        """Committed confirmations not added to the figures yet."""
        return self._unfolded_count

    @property
    def figures(self) -> WindowedFigures:
        """This worker's figures, every committed confirmation in."""
        self.fold()
        return self._figures

    def local(self, by: Dimension, window: Window) -> dict[str, Figures]:
        return self.figures.window(by, window, self._clock())

    @Service.timer(FOLD_EVERY_S)
    async def _fold_often(self) -> None:
        self.fold()

    @Service.timer(10.0)
    async def _export_often(self) -> None:
        self.export()

    def export(self) -> None:
        """Set the Prometheus series from the last hour's figures."""
        now = self._clock()
        figures = self.figures
        for by in Dimension:
            ranking = figures.hour_ranking(by, now)
            ranked = sorted(ranking, key=lambda key: (-ranking[key][1], key))
            top, rest = ranked[:TOP_N], ranked[TOP_N:]
            shown = {key: ranking[key] for key in top}
            if rest:
                shown["other"] = (
                    sum(ranking[key][0] for key in rest),
                    functools.reduce(sum_exact, (ranking[key][1] for key in rest)),
                )
            for name, gauge in (
                ("executions", self._metrics.window_executions),
                ("notional", self._metrics.window_notional),
            ):
                exported = self._exported.setdefault((by.value, name), set())
                for gone in exported - shown.keys():
                    gauge.remove(by.value, gone)
                for key, (executions, notional) in shown.items():
                    value = executions if name == "executions" else float(notional)
                    gauge.labels(by.value, key).set(value)
                self._exported[(by.value, name)] = set(shown)


class AnalyticsQueries:
    """Gathers one window's figures from every live worker."""

    def __init__(self, settings: Settings, analytics: Analytics, reports: WorkerReports) -> None:
        self._settings = settings
        self._analytics = analytics
        self._reports = reports

    async def ask(
        self, by: Dimension, window: Window, authorization: str | None
    ) -> dict[str, object]:
        own = self._settings.canonical_url.rstrip("/")
        others = sorted(
            {
                str(report.get("url", "")).rstrip("/")
                for report in self._reports.live_reports()
                if str(report.get("url", "")).rstrip("/") not in ("", own)
            }
        )
        deadline = self._settings.query_deadline.total_seconds()
        headers = {FORWARDED_HEADER: self._settings.worker_id}
        if authorization:
            headers["Authorization"] = authorization
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline)) as http:
            answers = await asyncio.gather(
                *(self._ask(http, url, by, window, headers) for url in others)
            )
        missing = [url for url, answer in zip(others, answers, strict=True) if answer is None]
        merged = merge_windows(
            [self._analytics.local(by, window), *(a for a in answers if a is not None)]
        )
        items = sorted(
            (figures.item(key) for key, figures in merged.items()),
            key=lambda item: (-Decimal(str(item["notional"])), str(item["key"])),
        )
        return {
            "window": window.value,
            "by": by.value,
            "items": items,
            "partial": bool(missing),
            "missing_workers": missing,
        }

    async def _ask(
        self,
        http: aiohttp.ClientSession,
        url: str,
        by: Dimension,
        window: Window,
        headers: dict[str, str],
    ) -> dict[str, Figures] | None:
        try:
            async with http.get(
                url + INTERNAL_PATH,
                params={"by": by.value, "window": window.value},
                headers=headers,
            ) as response:
                body = await response.read()
                if response.status != 200:
                    log.warning("worker %s answered analytics with %s", url, response.status)
                    return None
            data = orjson.loads(body)
            return {key: Figures.from_dict(value) for key, value in data["items"].items()}
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, KeyError) as exc:
            log.warning("worker %s did not answer analytics: %r", url, exc)
            return None
