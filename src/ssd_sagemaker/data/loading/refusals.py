"""Images refused while training loads them (`batch_work.py` checks each image as it is used
instead of all before the first batch), counted against the channel's tolerance as the checks
made while reading the channel are: each refused image named in the log when first met (up to
`MAX_LISTED`), the job stopped with the ClientError listing them as soon as more than
`MAX_ERROR_FRACTION` of the channel's examples are invalid, and one summary line at the end of
the channel's first pass naming what it refused."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ssd_sagemaker.data.checks.report import MAX_ERROR_FRACTION, MAX_LISTED, ChannelReport

LOG = logging.getLogger(__name__)


class Refusals:
    """The refusals of one channel, kept in the report its reading made (so one count and one
    message cover faults found before training and while loading)."""

    def __init__(self, report: ChannelReport):
        self.report = report
        self.late: dict[str, str] = {}  # origin -> problem, refused while loading
        self.summarised = False

    def add(self, refused: Iterable[tuple[str, str]]) -> None:
        """Count newly refused samples (one met again is not counted again); the channel's
        ClientError when they are now too many."""
        report = self.report
        for origin, problem in refused:
            if origin in self.late or origin in report.errors:
                continue
            self.late[origin] = problem
            report.error(origin, problem)
            report.used -= 1
            if len(self.late) <= MAX_LISTED:
                LOG.error("%s: %s: %s; left out", report.channel, origin, problem)
        if report.too_many_errors():
            report.check()  # raises, listing them

    def pass_done(self) -> None:
        """The channel's first pass ended: say what it refused (once)."""
        if self.summarised:
            return
        self.summarised = True
        report, late = self.report, self.late
        if not late:
            LOG.info("%s: first pass done: no image refused while loading", report.channel)
            return
        named = "; ".join(f"{origin}: {problem}" for origin, problem
                          in list(late.items())[:MAX_LISTED])
        more = (f"; ... and {len(late) - MAX_LISTED} more (run validate-data for the full "
                f"list)" if len(late) > MAX_LISTED else "")
        LOG.warning("%s: first pass done: %d image(s) refused while loading and left out "
                    "(%d invalid example(s) of %d in all; at most %g%% are tolerated): %s%s",
                    report.channel, len(late), report.error_count, report.found,
                    100 * MAX_ERROR_FRACTION, named, more)
