from __future__ import annotations

from pipeline.polling import poll


def test_poll_returns_once_the_condition_holds() -> None:
    answers = iter([False, False, True])
    assert poll(lambda: next(answers), timeout_s=5)


def test_poll_gives_up_after_its_timeout() -> None:
    calls: list[None] = []
    assert not poll(lambda: bool(calls.append(None)), timeout_s=0.3, longest=0.1)
    assert len(calls) >= 2
