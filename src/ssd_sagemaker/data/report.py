"""What reading a channel found, for training logs and for `validate-data` alike: counts
(found / used / skipped / errors), a warning or error per example naming it, the summary line,
and the rule that turns errors into a refusal.

Invalid examples are dropped one by one, each named in the log, so one corrupt image in a
large dataset does not cost the job; more than `MAX_ERROR_FRACTION` of them means the data or
the hyperparameters are wrong, and training stops with a ClientError listing them: never a
silent drop.
"""

from __future__ import annotations

import logging
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

    def warn(self, origin: str, message: str) -> None:
        self.warnings.append(f"{origin}: {message}")

    def error(self, origin: str, message: str) -> None:
        self.errors.setdefault(origin, []).append(message)

    @property
    def error_count(self) -> int:
        """Invalid examples (one example may have several problems)."""
        return len(self.errors)

    def error_lines(self) -> list[str]:
        return [f"{origin}: {problem}" for origin, problems in self.errors.items()
                for problem in problems]

    def summary(self) -> str:
        return (f"{self.channel} ({self.kind}): {self.found} found, {self.used} used, "
                f"{self.skipped} skipped, {self.error_count} with errors")

    def too_many_errors(self) -> bool:
        return self.error_count > MAX_ERROR_FRACTION * self.found

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
        if not self.too_many_errors():
            return
        lines = self.error_lines()
        text = [f"The {self.channel} channel has {self.error_count} invalid example(s) of "
                f"{self.found} (at most {100 * MAX_ERROR_FRACTION:g}% are tolerated); fix or "
                f"remove them:"]
        text += [f"  {line}" for line in lines[:MAX_LISTED]]
        if len(lines) > MAX_LISTED:
            text.append(f"  ... and {len(lines) - MAX_LISTED} more (run validate-data for the "
                        f"full list)")
        text.append(self.summary())
        raise ClientError("\n".join(text))
