"""Failures the puller's adapters report in its own terms."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database could not be reached or lost the connection: the step may succeed later (transient).

    The message is the original error's type and text, as the run records it.
    """
