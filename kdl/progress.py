"""Progress for the work a user waits on: a bar on a terminal, a few plain lines in a log,
nothing when quiet, nothing for work that ends within DELAY seconds.

- `bar(iterable, what=, total=)`: counted work (files read, inputs predicted, steps trained):
  tqdm's bar on stderr when it is a terminal;
- `stage(what)`: one long step that has no count (learning a vocabulary, converting a model):
  "kdl: WHAT ... 12 s" on a terminal, kept up to date by a timer thread;
- `set_quiet()`: the CLI's --quiet; `set_output(write)`: send plain lines to `write` instead of
  stderr (a `kdl compare` worker, whose stdout its parent reads);
- `paused()`: print other output (stdout) without breaking a bar on the terminal.

When stderr is not a terminal (a pipe, a log file, CI) there is no bar: work that lasts longer
than DELAY prints one plain line when it is noticed, one every LOG_EVERY seconds while it lasts,
and one when it ends.

>>> import io, contextlib
>>> with contextlib.redirect_stderr(io.StringIO()) as err:
...     total = sum(bar(range(1000), what="reading files", unit="files"))
...     with stage("learning the vocabulary"):
...         pass
>>> total, err.getvalue()           # quick work prints nothing
(499500, '')
"""

import contextlib
import sys
import threading
import time

DELAY = 2.0        # seconds of work before anything is shown
LOG_EVERY = 30.0   # seconds between plain lines while work lasts, when stderr is not a terminal
PREFIX = "kdl: "

_state = {"quiet": False, "write": None}


def set_quiet(quiet=True):
    """Show no progress at all in this process (`--quiet`)."""
    _state["quiet"] = bool(quiet)


def set_output(write):
    """Send progress as plain lines to `write(line)`, without the "kdl: " prefix (None: as
    "kdl: ..." lines to stderr again)."""
    _state["write"] = write


def _terminal():
    """A bar can be drawn: not quiet, no line sink, stderr is a terminal."""
    return not _state["quiet"] and _state["write"] is None and _isatty(sys.stderr)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):     # replaced by an object without it, or closed
        return False


def _line(message):
    if _state["quiet"]:
        return
    if _state["write"] is not None:
        _state["write"](message)
    else:
        print(PREFIX + message, file=sys.stderr, flush=True)


def _seconds(seconds):
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def bar(iterable=None, *, what, total=None, unit="items"):
    """`iterable`, with progress shown while it is consumed; without one, call `update(n)` as
    items are done. Either way it is a context manager (closing it ends the bar's line, so that an
    error is printed below it) and has `close()`. `total`: how many items (default len(iterable) when it has
    one); `unit`: what they are, plural ("files").

    >>> with bar(what="training", total=10, unit="steps") as steps:
    ...     steps.update(10)
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if _terminal():
        from tqdm import tqdm

        return tqdm(iterable, desc=PREFIX + what, total=total, unit=unit, delay=DELAY, file=sys.stderr,
                    dynamic_ncols=True)
    return _Lines(iterable, what, total, unit)


class _Lines:
    """A bar as a few plain lines: when the work has lasted DELAY, every LOG_EVERY, at the end."""

    def __init__(self, iterable, what, total, unit):
        self.iterable, self.what, self.total, self.unit = iterable, what, total, unit
        self.n, self.start, self.shown, self.closed = 0, time.perf_counter(), None, False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        due = self.shown is None or now - self.shown >= LOG_EVERY
        unfinished = not self.total or self.n < self.total      # the last line is close's
        if due and unfinished and not self.closed and now - self.start >= DELAY:
            self.shown = now
            _line(f"{self.what}: {self._count()} ({_seconds(now - self.start)})")

    def _count(self):
        return f"{self.n:,}{f'/{self.total:,}' if self.total else ''} {self.unit}"

    def close(self):
        elapsed = time.perf_counter() - self.start
        if not self.closed and (self.shown is not None or (self.n and elapsed >= DELAY)):
            _line(f"{self.what}: {self._count()} in {_seconds(elapsed)}")
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def stage(what):
    """A step without a count: shown once it has lasted DELAY seconds, with its time so far
    (each second on a terminal, every LOG_EVERY seconds in a log), and its time when it ends.

    >>> with stage("converting the model to ONNX"):
    ...     pass
    """
    if _state["quiet"]:
        yield
        return
    start, done, shown = time.perf_counter(), threading.Event(), threading.Event()
    terminal = _terminal()

    def show():
        interval = 1.0 if terminal else LOG_EVERY
        if done.wait(DELAY):
            return
        while True:
            elapsed = time.perf_counter() - start
            if terminal:      # whole seconds: the line only grows, so \r overwrites it all
                print(f"\r{PREFIX}{what} ... {elapsed:.0f} s", end="", file=sys.stderr, flush=True)
            else:
                _line(f"{what} ... ({_seconds(elapsed)})")
            shown.set()
            if done.wait(interval):
                return

    timer = threading.Thread(target=show, name="kdl-progress", daemon=True)
    timer.start()
    ended = "done in"
    try:
        yield
    except BaseException:
        ended = "stopped after"
        raise
    finally:
        done.set()
        timer.join()
        if shown.is_set() or time.perf_counter() - start >= DELAY:
            elapsed = _seconds(time.perf_counter() - start)
            if terminal:
                print(f"\r{PREFIX}{what}: {ended} {elapsed}", file=sys.stderr, flush=True)
            else:
                _line(f"{what}: {ended} {elapsed}")


@contextlib.contextmanager
def paused():
    """Write to stdout or stderr inside this block without breaking a bar drawn on the terminal."""
    if not _terminal():
        yield
        return
    from tqdm import tqdm

    with tqdm.external_write_mode():
        yield
