"""The one base class of the project's own errors, and the one question callers ask of any error.

Every room raises subclasses of :class:`InterestGraphError` for conditions it can name (a store
that is locked, a broker that does not answer, a setting out of range). Each class says once
whether the same call may succeed if tried again later (:attr:`InterestGraphError.retryable`):
:class:`core.retry.RetryPolicy` retries those and lets every other error through.
"""

from __future__ import annotations

from typing import ClassVar


class InterestGraphError(Exception):
    """Base of the project's own errors.

    Attributes:
        retryable (bool): ``True`` when the condition may pass by itself (something is starting,
            restarting or locked by another process), so the same call is worth trying again with
            backoff; ``False`` when something must be fixed first (class attribute, default ``False``).
    """

    retryable: ClassVar[bool] = False


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is one of our errors that says the same call may succeed later."""
    return isinstance(exc, InterestGraphError) and exc.retryable
