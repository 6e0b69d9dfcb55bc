"""The session stops answering pipelined requests at its outbound high-water mark.

Sans-I/O, no server: one ``receive_data`` call with a hundred pipelined
``read`` requests of 64 KiB each must not build 6 MiB of answers when the
mark is 128 KiB. The frames past the mark wait in the decoder
(``input_paused``) until the shell has sent the buffer and calls
``resume_input``; every request is still answered, once, in order.
"""

from __future__ import annotations

from minibroker.core.broker import Broker
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.protocol.session import Session, SessionSettings
from minibroker.storage import MemoryLog

HIGH_WATER = 128 * 1024
ANSWER = 64 * 1024


def test_pipelined_answers_stop_at_the_high_water_mark() -> None:
    broker = Broker(memory_log=MemoryLog)
    session = Session(broker, 1, settings=SessionSettings(outbound_high_water=HIGH_WATER))
    session.receive_data(
        pack_frame({"op": "hello", "id": 1, "version": PROTOCOL_VERSION})
        + pack_frame({"op": "log.create", "id": 2, "log": "big"})
        + pack_frame(
            {"op": "append", "id": 3, "log": "big", "records": [{"body": b"r" * 1000}] * 200}
        ),
        0.0,
    )
    decoder = RawFrameDecoder()
    decoder.receive_data(session.data_to_send())
    assert [f["op"] for f in decoder.values()] == ["ok", "ok", "ok"]

    requests = b"".join(
        pack_frame({"op": "read", "id": i, "log": "big", "max_bytes": ANSWER})
        for i in range(100, 200)
    )
    session.receive_data(requests, 0.0)  # one chunk, a hundred requests
    answered: list[int] = []
    rounds = 0
    while True:
        # The shell's writer: what is buffered never passes the mark by more
        # than one answer.
        assert session.outbound_bytes < HIGH_WATER + 2 * ANSWER
        decoder.receive_data(session.data_to_send())
        answered += [f["id"] for f in decoder.values() if f["op"] == "ok"]
        if not session.input_paused:
            break
        rounds += 1
        session.resume_input(0.0)  # the shell's reader, once the buffer is sent
    assert answered == list(range(100, 200))
    assert rounds >= 100 * ANSWER // (HIGH_WATER + ANSWER) - 1
