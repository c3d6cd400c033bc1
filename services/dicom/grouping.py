"""Released associations into batches, each the instances of one job: per association, or per study.

``association`` (the default): a released association is a batch at once. ``study``: each study of it
joins the open batch of that study on that AE title, and a batch closes once ``timeout`` seconds passed
without another association adding to it, so a study sent over several associations becomes one job.
Runs on the event loop; ``submit`` is called with each closed batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from services.dicom.config import DicomConfig
from services.dicom.incoming import Released


@dataclass(frozen=True)
class Part:
    """Instances of one association: all of them, or one study's."""

    association: str
    study: str | None


@dataclass
class Batch:
    """What one job (per mapped pipeline) is made of."""

    called: str
    parts: list[Part] = field(default_factory=list)
    calling: set[str] = field(default_factory=set)
    studies: dict[str, dict[str, int]] = field(default_factory=dict)
    """Instances by study UID, then series UID."""
    jobs_made: set[str] = field(default_factory=set)
    """The pipeline keys whose job was made and started (the submitter's progress through the mapping)."""

    @property
    def instances(self) -> int:
        return sum(sum(series.values()) for series in self.studies.values())

    def add(self, released: Released, study: str | None) -> None:
        self.parts.append(Part(released.id, study))
        self.calling.add(released.calling)
        for uid, series in released.studies.items():
            if study is None or uid == study:
                into = self.studies.setdefault(uid, {})
                for series_uid, count in series.items():
                    into[series_uid] = into.get(series_uid, 0) + count


class Grouper:
    """Collects released associations; calls ``submit(batch)`` when a batch closes."""

    def __init__(self, config: Callable[[], DicomConfig], submit: Callable[[Batch], None]) -> None:
        self._config = config
        self._submit = submit
        self._open: dict[tuple[str, str], tuple[Batch, asyncio.TimerHandle]] = {}

    def released(self, released: Released) -> None:
        ae_title = self._config().ae_title(released.called)
        if ae_title is None or ae_title.grouping == "association":
            batch = Batch(released.called)  # an AE title since removed: the submitter says so and drops it
            batch.add(released, None)
            self._submit(batch)
            return
        loop = asyncio.get_running_loop()
        for study in released.studies:
            key = (released.called, study)
            batch, timer = self._open.pop(key, (Batch(released.called), None))
            if timer is not None:
                timer.cancel()
            batch.add(released, study)
            self._open[key] = (batch, loop.call_later(ae_title.timeout, self._close, key))

    def _close(self, key: tuple[str, str]) -> None:
        batch, _ = self._open.pop(key)
        self._submit(batch)

    def stop(self) -> None:
        """Forget open batches: their associations' instances stay released on disk and are grouped again
        at the next start."""
        for _, timer in self._open.values():
            timer.cancel()
        self._open.clear()
