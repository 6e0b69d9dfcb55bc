"""Connection-level requests: hello, ping, unsubscribe, pause, resume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minibroker.protocol import frames

if TYPE_CHECKING:
    from minibroker.protocol.session import Session


def hello(session: Session, frame: frames.Hello, now: float) -> dict[str, object]:
    return session.hello(frame)


def ping(session: Session, frame: frames.Ping, now: float) -> bytes | None:
    return frame.data


def unsubscribe(session: Session, frame: frames.Unsubscribe, now: float) -> None:
    source = session.remove_subscription(frame.sub)
    source.cancel(now)


def pause(session: Session, frame: frames.Pause, now: float) -> None:
    session.pause_subscription(frame.sub)


def resume(session: Session, frame: frames.Resume, now: float) -> None:
    session.resume_subscription(frame.sub)
