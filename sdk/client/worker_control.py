"""``Client.pause_workers`` / ``resume_workers``: stop and restart claims on a worker or a handler
(Conductor's pause/resume of workers). The switch is a key in KV ``jw_control`` that workers
follow (``sdk/worker/pausing.py``); running jobs are never touched."""

from __future__ import annotations

import re
from typing import Final

from nats.js.errors import KeyNotFoundError

from events import subjects
from sdk.client.control import default_operator
from sdk.client.reads import ClientReads
from sdk.client.translate import translated
from sdk.errors import InvalidArgument
from sdk.worker.pausing import PauseRecord, handler_key, set_pause, worker_key

_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class ClientWorkerControl(ClientReads):
    async def pause_workers(
        self, *, worker_id: str | None = None, handler: str | None = None, reason: str = ""
    ) -> str:
        """Stop new claims on the live worker ``worker_id``, or on every worker's ``handler``
        jobs; running jobs finish. Returns the switch set (``pause.worker.<id>`` …).
        ``InvalidArgument`` for neither or both, a malformed name, or no such live worker."""
        key = await self._switch(worker_id, handler, must_be_live=True)
        record = PauseRecord.now(by=default_operator(), reason=reason)
        with translated("pausing", url=self._url):
            await set_pause(self._nc.jetstream(), key, record)
        return key

    async def resume_workers(
        self, *, worker_id: str | None = None, handler: str | None = None
    ) -> bool:
        """Let a paused worker or handler claim again; False if it was not paused."""
        key = await self._switch(worker_id, handler, must_be_live=False)
        with translated("resuming", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
            await set_pause(self._nc.jetstream(), key, None)
        return True

    async def _switch(
        self, worker_id: str | None, handler: str | None, *, must_be_live: bool
    ) -> str:
        if (worker_id is None) == (handler is None):
            raise InvalidArgument("name either a worker id or a handler (--handler NAME)")
        name = worker_id if worker_id is not None else handler
        assert name is not None
        if not _NAME.match(name):
            what = "worker id" if worker_id is not None else "handler name"
            raise InvalidArgument(f"{name!r} is not a valid {what} (letters, digits, _ and -)")
        if handler is not None:
            return handler_key(handler, self._ns)  # the handler in the client's namespace
        if must_be_live and worker_id not in {w.worker_id for w in await self.workers()}:
            raise InvalidArgument(
                f"no live worker has id {worker_id!r} (`jetwork workers` lists them; "
                "pause a handler with --handler to cover workers not started yet)"
            )
        return worker_key(name)
