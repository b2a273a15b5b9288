"""Tests for minivae.run.stops: one handler for Ctrl-C, SIGTERM and SIGHUP; a first signal while a run trains only
asks it to stop; one KeyboardInterrupt at a time; blocks that must run whole are never cut; nothing after settle."""

import os
import signal
from types import SimpleNamespace

import pytest

from minivae.run import stops


def send(signum=signal.SIGTERM):
    os.kill(os.getpid(), signum)  # delivered to this (the main) thread before the next line runs


@pytest.mark.parametrize("signum", stops.SIGNALS)
def test_every_stop_signal_raises_keyboard_interrupt(signum):
    with stops.handled(), pytest.raises(KeyboardInterrupt):
        send(signum)


def test_handled_puts_the_previous_handlers_back():
    before = {sig: signal.getsignal(sig) for sig in stops.SIGNALS}
    with stops.handled():
        assert all(signal.getsignal(sig) is not before[sig] for sig in stops.SIGNALS)
    assert {sig: signal.getsignal(sig) for sig in stops.SIGNALS} == before


def test_a_first_signal_while_a_run_trains_only_asks_it_to_stop_and_a_second_raises():
    state = SimpleNamespace(stop_requested=False)
    with stops.handled(), stops.watching(state):
        send()
        assert state.stop_requested
        with pytest.raises(KeyboardInterrupt):
            send(signal.SIGHUP)


def test_a_block_that_must_run_whole_finishes_before_the_interrupt():
    done = []
    with stops.handled(), pytest.raises(KeyboardInterrupt):
        with stops.whole():
            send()
            done.append("the rest of the block")
        done.append("after the block")
    assert done == ["the rest of the block"]


def test_only_one_interrupt_is_raised_until_arm_allows_another():
    with stops.handled():
        with pytest.raises(KeyboardInterrupt):
            send()
        send()  # while the first is being handled: remembered, not raised
        with pytest.raises(KeyboardInterrupt):
            stops.arm()  # the remembered one, now
        stops.arm()  # nothing remembered: nothing raised
        with pytest.raises(KeyboardInterrupt):
            send()


def test_a_signal_after_disarm_waits_for_arm():
    with stops.handled():
        stops.disarm()
        send()
        with pytest.raises(KeyboardInterrupt):
            stops.arm()


def test_after_settle_every_signal_is_ignored():
    with stops.handled():
        stops.settle()
        for signum in stops.SIGNALS:
            send(signum)
        with stops.whole():
            send()
        stops.arm()


def test_without_the_handler_a_whole_block_changes_nothing():
    with pytest.raises(KeyboardInterrupt):  # Python's own Ctrl-C handler raises where the signal lands
        with stops.whole():
            send(signal.SIGINT)
            pytest.fail("the default handler waited for the block")
    with stops.whole():
        pass  # and a block leaves no state behind: nothing is raised here
