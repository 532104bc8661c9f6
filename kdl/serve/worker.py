"""The model thread of `kdl serve`: every call into a served run's model runs on one thread, and
the predictions that wait for it together are made in one `recipe.predict` call.

Keras keeps part of its state per thread and a model is not guaranteed thread-safe on every
backend (JAX's predict fails when called from several threads at once; docs/serve.md), so the
requests take turns on one thread. A `recipe.predict` call also costs a fixed time besides the
model's work (TensorFlow's `model.predict` builds an input pipeline on every call), so the
predictions queued while one runs are joined when they can be: the same options, and inputs of
one kind (lists of files, texts or waveforms; arrays of one shape). If a joined call fails or
warns, each prediction runs alone, so every request gets its own answer, error and warnings.
docs/serve.md measures this against one call per request, a lock, and no serialisation.

>>> thread = ModelThread()
>>> thread.call(sum, [1, 2]).result()
3
>>> thread.close()
"""

import collections
import concurrent.futures
import queue
import threading
import warnings

import numpy as np

from kdl.errors import KdlWarning

JOINED = 256        # the most inputs one joined call predicts (what `kdl predict` reads at once)


class ModelThread:
    """One thread that runs the jobs given to it in turn; `predict` jobs waiting together are joined."""

    def __init__(self):
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="kdl-model", daemon=True)
        self._thread.start()

    def call(self, function, *args, **kwargs):
        """A Future of function(*args, **kwargs), run on the model thread."""
        future = concurrent.futures.Future()
        self._queue.put(_Call(future, lambda: function(*args, **kwargs)))
        return future

    def predict(self, recipe, batch, options, top_k=()):
        """A Future of (recipe.predict(batch, **options).rows(*top_k), [KdlWarning messages]), run
        on the model thread; `batch` is a list (files, texts, waveforms) or an array."""
        prediction = _Prediction(concurrent.futures.Future(), recipe, batch, options, top_k)
        self._queue.put(prediction)
        return prediction.future

    def close(self):
        """Stop after the job under way; the jobs still queued are answered with an error."""
        self._queue.put(None)

    def _work(self):
        waiting = collections.deque()
        while True:
            job = waiting.popleft() if waiting else self._queue.get()
            if job is None:
                self._stop(waiting)
                return
            if isinstance(job, _Prediction):
                self._predict([job, *self._joinable(job, waiting)])
            else:
                _settle(job.future, job.work)

    def _stop(self, waiting):
        self._drain(waiting)
        for job in waiting:
            if job is not None:
                _settle(job.future, _stopped)

    def _drain(self, waiting):
        """Move every job queued now to the end of `waiting`."""
        while True:
            try:
                waiting.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _joinable(self, first, waiting):
        """The predictions queued now that share `first`'s call, a power-of-two count of inputs in
        all when each is one input (a backend that compiles each batch shape, JAX, then compiles
        a few); the other jobs stay in `waiting`, in order."""
        self._drain(waiting)
        same = [job for job in waiting if isinstance(job, _Prediction) and job.key == first.key]
        total = min(JOINED, len(first.batch) + sum(len(job.batch) for job in same))
        target, count, found = 1 << (total.bit_length() - 1), len(first.batch), []
        for job in same:
            if count + len(job.batch) <= target:
                found.append(job)
                count += len(job.batch)
        kept = [job for job in waiting if not any(job is taken for taken in found)]
        waiting.clear()
        waiting.extend(kept)
        return found

    def _predict(self, jobs):
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if len(jobs) > 1:
            first = jobs[0]
            batch = ([item for job in jobs for item in job.batch] if isinstance(first.batch, list)
                     else np.concatenate([job.batch for job in jobs]))
            try:
                rows, warned = _rows(first.recipe, batch, first.options, first.top_k)
            except Exception:      # one request's bad input: alone, each gets its own answer or error
                rows, warned = [], True
            if len(rows) == len(batch) and not warned:
                start = 0
                for job in jobs:
                    job.future.set_result((rows[start:start + len(job.batch)], []))
                    start += len(job.batch)
                return
        for job in jobs:
            try:
                job.future.set_result(_rows(job.recipe, job.batch, job.options, job.top_k))
            except Exception as error:
                job.future.set_exception(error)


class _Call:
    def __init__(self, future, work):
        self.future, self.work = future, work


class _Prediction:
    def __init__(self, future, recipe, batch, options, top_k):
        self.future, self.recipe, self.batch, self.options, self.top_k = future, recipe, batch, options, top_k
        kind = ("list",) if isinstance(batch, list) else ("array", batch.shape[1:], batch.dtype.str)
        self.key = (id(recipe), kind, tuple(sorted(options.items())), tuple(top_k))


def _rows(recipe, batch, options, top_k):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KdlWarning)
        rows = recipe.predict(batch, **options).rows(*top_k)
    return rows, [str(warning.message) for warning in caught if issubclass(warning.category, KdlWarning)]


def _settle(future, work):
    if not future.set_running_or_notify_cancel():     # its caller stopped waiting
        return
    try:
        future.set_result(work())
    except Exception as error:
        future.set_exception(error)


def _stopped():
    raise RuntimeError("the server is stopping")
