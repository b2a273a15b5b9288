"""threads.py: `run` calls every task once, on as many threads, and passes errors on; limit_threads sets and
restores the thread counts."""

import threading

import pytest

from minivae import threads


def test_run_calls_each_task_once_each_on_its_own_thread():
    seen = []
    with threads.limit_threads(3):
        threads.run([lambda i=i: seen.append((i, threading.get_ident())) for i in range(3)])
    assert sorted(i for i, _ in seen) == [0, 1, 2]
    assert len({ident for _, ident in seen}) == 3


def test_an_error_in_a_worker_is_raised_by_run_after_every_task_finished():
    finished = []

    def fail():
        raise ZeroDivisionError("in a worker")

    with threads.limit_threads(2), pytest.raises(ZeroDivisionError, match="in a worker"):
        threads.run([lambda: finished.append("caller"), fail])
    assert finished == ["caller"]
    with threads.limit_threads(2):  # the worker survived its error and serves the next call
        threads.run([lambda: finished.append(0), lambda: finished.append(1)])
    assert sorted(finished[1:]) == [0, 1]


def test_more_tasks_than_threads_are_refused():
    with threads.limit_threads(1), pytest.raises(ValueError, match="2 tasks for 1 threads"):
        threads.run([print, print])


def test_limit_threads_sets_blas_and_elementwise_threads_and_restores_them():
    before = threads.elementwise_threads, threads.blas_threads()
    with threads.limit_threads(1):
        assert (threads.elementwise_threads, threads.blas_threads()) == (1, "1")
    assert (threads.elementwise_threads, threads.blas_threads()) == before


def test_zero_threads_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        threads.limit_threads(0)
