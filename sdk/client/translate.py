"""The client's boundary with nats-py: every nats-py exception becomes a ``JetworkError`` here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import nats.errors
import nats.js.errors

from events.errors import JetworkError, ServerUnavailable, StoreError
from events.subjects import is_valid_token
from sdk.errors import InvalidArgument

_CONNECTION_ERRORS = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
)
_SET_UP = "Has `jetwork server` (or any engine) set up this NATS server yet?"


@contextlib.contextmanager
def translated(what: str, *, url: str) -> Iterator[None]:
    """Run a NATS operation; re-raise what nats-py raises as a jetwork error naming ``what``."""
    try:
        yield
    except JetworkError:
        raise
    except nats.js.errors.NoStreamResponseError:
        raise StoreError(f"{what}: no JetStream stream answers at {url}. {_SET_UP}") from None
    except nats.js.errors.NotFoundError as exc:
        raise StoreError(f"{what}: not found at {url} ({exc.description}). {_SET_UP}") from None
    except nats.js.errors.ServiceUnavailableError:
        raise ServerUnavailable(f"{what}: JetStream is not available at {url}") from None
    except nats.js.errors.APIError as exc:
        raise StoreError(f"{what}: JetStream refused it ({exc.description})") from None
    except _CONNECTION_ERRORS as exc:
        raise ServerUnavailable(
            f"{what}: lost the connection to {url} ({type(exc).__name__})"
        ) from None
    except nats.errors.NoRespondersError:
        raise StoreError(f"{what}: nothing answers at {url}. {_SET_UP}") from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise StoreError(
            f"{what}: the NATS server at {url} did not answer", retryable=True
        ) from None
    except nats.errors.Error as exc:
        raise StoreError(f"{what}: {exc or type(exc).__name__}") from None


def require_id(value: str, *, what: str = "workflow id") -> str:
    """``value`` if it can be a subject token, else ``InvalidArgument`` saying why."""
    if not isinstance(value, str) or not is_valid_token(value):
        raise InvalidArgument(
            f"{what} {value!r} is not valid: use 1-128 letters, digits, '_' or '-'"
        )
    return value
