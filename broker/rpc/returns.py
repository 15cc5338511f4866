"""Unroutable requests, seen on a channel that does not confirm: a replacement for aiormq's
handler of ``Basic.Return``.

Why: aiormq (7.2) matches a returned message to its publish only on a confirming channel; on
any other it logs the return and drops it, so a call to a method nobody serves would wait for
its timeout. Confirming every request cost round-trip time and throughput
(docs/adr/publisher-confirms-off.md). So the channel's ``_on_return_frame`` (a private method of
aiormq's, kept to this one module) is replaced by one that reads the returned message exactly
as aiormq's does (content header, then body) and hands it to the client, which fails the call
it belongs to by its correlation id.

aiormq is pinned below 7.3 for this; tests/test_rpc.py fails if a return stops arriving here.
The day aiormq hands returns of a non-confirming channel to a callback, this module goes.
"""

from __future__ import annotations

from collections.abc import Callable

import aiormq
import aiormq.abc
from pamqp.commands import Basic
from pamqp.header import ContentHeader


def watch_returns(
    channel: aiormq.Channel, on_returned: Callable[[aiormq.abc.DeliveredMessage], None]
) -> None:
    """Call ``on_returned`` with each message the broker returns on ``channel`` (unroutable)."""

    async def on_return(frame: Basic.Return) -> None:
        header = await channel._get_frame()
        if not isinstance(header, ContentHeader):
            # What aiormq raises in its own reader for this: its channel then closes.
            raise ValueError(f"unexpected frame {header!r} after Basic.Return")  # noqa: TRY004
        message = await channel._read_content(frame, header)
        on_returned(message)

    channel._on_return_frame = on_return  # type: ignore[method-assign]
