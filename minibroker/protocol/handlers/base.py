"""Connection-level requests: hello, ping, unsubscribe, pause, resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minibroker.protocol import frames
from minibroker.protocol.handlers.registry import handles

if TYPE_CHECKING:
    from minibroker.protocol.session import Session


@handles(frames.Hello)
def hello(session: Session, frame: frames.Hello) -> dict[str, object]:
    return session.hello(frame)


@handles(frames.Ping)
def ping(session: Session, frame: frames.Ping) -> bytes | None:
    return frame.data


@handles(frames.Unsubscribe)
def unsubscribe(session: Session, frame: frames.Unsubscribe) -> None:
    source = session.remove_subscription(frame.sub)
    source.cancel(session.now)


@handles(frames.Pause)
def pause(session: Session, frame: frames.Pause) -> None:
    session.pause_subscription(frame.sub)


@handles(frames.Resume)
def resume(session: Session, frame: frames.Resume) -> None:
    session.resume_subscription(frame.sub)
