"""What reading a channel found, for training logs and for `validate-data` alike: counts
(found / used / skipped / errors / bytes lost to broken RecordIO framing), a warning or error
per example naming it, the summary line, and the rule that turns errors into a refusal.

Invalid examples are dropped one by one, each named in the log, so one corrupt image in a
large dataset does not cost the job; more than `MAX_ERROR_FRACTION` of them means the data or
the hyperparameters are wrong, and training stops with a ClientError listing them: never a
silent drop. Bytes skipped where the framing broke (a foreign object among the channel's
objects, a damaged record) hide an unknown number of examples, so they are measured apart, in
bytes, under the same tolerance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ssd_sagemaker.errors import ClientError

LOG = logging.getLogger(__name__)

MAX_ERROR_FRACTION = 0.01
# Lines of a ClientError or of the training log (FailureReason keeps 1024 characters; the full
# list is what `validate-data` prints).
MAX_LISTED = 20


@dataclass
class ChannelReport:
    """Counts and messages of one channel (or one pass over a Pipe-mode channel)."""

    channel: str
    kind: str
    found: int = 0
    used: int = 0
    skipped: int = 0
    errors: dict[str, list[str]] = field(default_factory=dict)  # origin -> problems
    warnings: list[str] = field(default_factory=list)
    read_bytes: int = 0  # of RecordIO framing read (records and lost bytes)
    lost_bytes: int = 0  # skipped to resynchronise after a break in the framing
    losses: list[str] = field(default_factory=list)  # one line per break
    elsewhere: int = 0  # of `skipped`: annotations of images sharded to other hosts
    on_example: Callable[[], None] | None = None  # after each example checked (progress)

    def examined(self) -> None:
        """One example has been checked (validate-data shows its progress from this)."""
        if self.on_example is not None:
            self.on_example()

    def warn(self, origin: str, message: str) -> None:
        self.warnings.append(f"{origin}: {message}")

    def error(self, origin: str, message: str) -> None:
        self.errors.setdefault(origin, []).append(message)

    def lose(self, origin: str, size: int, message: str) -> None:
        """`size` bytes skipped at `origin` (object and byte offset) after a framing break."""
        self.lost_bytes += size
        self.losses.append(f"{origin}: {message}")

    @property
    def has_problems(self) -> bool:
        """Any invalid example or lost byte (validate-data's verdict)."""
        return bool(self.errors or self.losses)

    @property
    def error_count(self) -> int:
        """Invalid examples (one example may have several problems)."""
        return len(self.errors)

    def error_lines(self) -> list[str]:
        return [f"{origin}: {problem}" for origin, problems in self.errors.items()
                for problem in problems] + self.losses

    def summary(self) -> str:
        breaks = len(self.losses)
        lost = (f", {self.lost_bytes} bytes lost at {breaks} break{'s' * (breaks != 1)} in "
                f"the framing" if self.losses else "")
        elsewhere = (f" ({self.elsewhere} annotations of images on other hosts)"
                     if self.elsewhere else "")
        return (f"{self.channel} ({self.kind}): {self.found} found, {self.used} used, "
                f"{self.skipped} skipped{elsewhere}, {self.error_count} with errors{lost}")

    def too_many_lost(self) -> bool:
        return self.lost_bytes > MAX_ERROR_FRACTION * self.read_bytes

    def too_many_errors(self) -> bool:
        return self.error_count > MAX_ERROR_FRACTION * self.found or self.too_many_lost()

    def log(self) -> None:
        """Each warning and error (capped), then the summary line."""
        for kind, lines, emit in (("warnings", self.warnings, LOG.warning),
                                  ("errors", self.error_lines(), LOG.error)):
            for line in lines[:MAX_LISTED]:
                emit("%s: %s", self.channel, line)
            if len(lines) > MAX_LISTED:
                emit("%s: ... and %d more %s (run validate-data for the full list)",
                     self.channel, len(lines) - MAX_LISTED, kind)
        LOG.info("%s", self.summary())

    def check(self) -> None:
        """Raise a ClientError when too many examples are invalid (see the module docstring)."""
        if self.error_count and not self.too_many_errors():
            LOG.warning("%s: %d invalid example(s) left out (at most %g%% of %d are tolerated)",
                        self.channel, self.error_count, 100 * MAX_ERROR_FRACTION, self.found)
        if self.losses and not self.too_many_errors():
            LOG.warning("%s: %d of %d bytes skipped where the RecordIO framing broke (at most "
                        "%g%% are tolerated)", self.channel, self.lost_bytes, self.read_bytes,
                        100 * MAX_ERROR_FRACTION)
        if not self.too_many_errors():
            return
        lines = self.error_lines()
        if self.too_many_lost():
            text = [f"The {self.channel} channel lost {self.lost_bytes} of {self.read_bytes} "
                    f"bytes where its RecordIO framing broke (at most "
                    f"{100 * MAX_ERROR_FRACTION:g}% are tolerated): an object that is not "
                    f"RecordIO among the channel's objects (e.g. compressed), or damaged "
                    f"records; remove or rewrite them:"]
        else:
            text = [f"The {self.channel} channel has {self.error_count} invalid example(s) of "
                    f"{self.found} (at most {100 * MAX_ERROR_FRACTION:g}% are tolerated); fix "
                    f"or remove them:"]
        text += [f"  {line}" for line in lines[:MAX_LISTED]]
        if len(lines) > MAX_LISTED:
            text.append(f"  ... and {len(lines) - MAX_LISTED} more (run validate-data for the "
                        f"full list)")
        text.append(self.summary())
        raise ClientError("\n".join(text))
