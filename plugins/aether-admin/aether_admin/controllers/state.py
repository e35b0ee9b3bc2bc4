"""``/cluster/state``: a digest of this node's store, to see that replicas converged.

Replicas that applied the same log hold the same records, so their digests are equal
once they have applied the same index. The digest covers every record (configs,
schemas, users, secrets as ciphertext, …) in revision order, each encoded with sorted
keys so two backends holding the same data agree. It reads the local store only (no
read barrier): it is this node's state, whatever the leader has. It costs a read of the
whole store, so it is for operators and tests, not for a polling loop.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar import Controller, Request, get

from aether_admin.context import context
from aether_core.storage.base import Storage

Req = Request[Any, Any, Any]


class StateOut(msgspec.Struct, kw_only=True):
    revision: int  #: the last revision in this node's store
    applied_index: int  #: the last log index applied here (0 without a log)
    records: int
    sha256: str  #: of every record in revision order


async def state_digest(storage: Storage) -> StateOut:
    digest = hashlib.sha256()
    count = 0
    cursor = 0
    # records_since, not the change feed: a compacted store still digests what it keeps.
    while batch := await storage.records_since(cursor):
        for record in batch:
            digest.update(msgspec.json.encode(record, order="sorted"))
            digest.update(b"\n")
        count += len(batch)
        cursor = batch[-1].revision
    return StateOut(revision=cursor, applied_index=await storage.applied_index(),
                    records=count, sha256=digest.hexdigest())


class StateController(Controller):
    tags = ["cluster"]

    @get("/cluster/state", summary="A digest of this node's store (equal on replicas that "
         "applied the same log)")
    async def state(self, request: Req) -> StateOut:
        return await state_digest(context(request).manager.storage)
