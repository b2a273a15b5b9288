"""threads.py: `run` calls every task once, on as many threads, and passes errors on; `in_slices` cuts big
arrays into one block per thread; limit_threads sets and restores the thread counts."""

import threading

import numpy as np
import pytest

from minivae.core import threads


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


def test_in_slices_gives_each_thread_one_block_of_a_big_array_along_its_longest_stride():
    blocks = []
    x = np.arange(2 * threads.MIN_SLICE * 3, dtype=np.float32).reshape(6, -1).T  # a transposed view: (N, 6)
    out = np.empty_like(x)

    def negate(x_block, out_block):
        blocks.append((x_block.shape, threading.get_ident()))
        np.negative(x_block, out=out_block)

    with threads.limit_threads(2):
        threads.in_slices(negate, x, out)
    assert np.array_equal(out, -x)
    assert sorted(shape for shape, _ in blocks) == [(len(x), 3), (len(x), 3)]  # cut along axis 1, x's memory order
    assert len({ident for _, ident in blocks}) == 2


def test_in_slices_leaves_a_small_array_whole_on_the_calling_thread():
    calls = []
    x = np.ones(threads.MIN_SLICE, dtype=np.float32)
    with threads.limit_threads(2):
        threads.in_slices(lambda block: calls.append((block.shape, threading.get_ident())), x)
    assert calls == [(x.shape, threading.get_ident())]
