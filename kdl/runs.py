"""Run directories on disk: whole-directory atomic writes, and safe model loading.

A run directory is written whole or not at all. `write_directory(path, fill)` lets `fill(tmp)`
write the new contents into the sibling folder `.NAME.kdl-new`, carries over the files of the
old directory that `fill` did not write and that are not in `replaces` (history.csv and
checkpoint.keras from training stay), then swaps with two renames: the old directory becomes
`.NAME.kdl-old`, the new one becomes NAME, and the old one is removed. A kill at any moment
leaves the old or the new complete directory. (Do not save one run directory from two
processes at once.)

The recovery rule (`recover`, run before every read and write of a run directory): NAME
missing and `.NAME.kdl-old` present means a kill fell between the two renames, so the old
directory is renamed back; a leftover `.NAME.kdl-new` is an unfinished write and is removed;
a leftover `.NAME.kdl-old` beside a present NAME is a finished swap and is removed.
`kdl.recipes.load` only renames back; it deletes nothing.

`lock(path)` holds a run directory for one process (a `.kdl-lock` file made with O_EXCL, naming
its pid and host): a second trainer or saver on the same directory fails at once with a message
naming the holder; a lock left by a process that no longer runs (same host) is taken over.

`load_model` reads a `.keras` file in Keras' safe mode and refuses files with `Lambda`
layers (loading one runs Python code stored in the file) unless `unsafe=True`.

>>> import pathlib, tempfile
>>> run = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> write_directory(run, lambda tmp: (tmp / "history.csv").write_text("epoch,loss"))
>>> write_directory(run, lambda tmp: (tmp / "model.keras").write_text("..."))
>>> sorted(p.name for p in run.iterdir())      # the new file, and history.csv carried over
['history.csv', 'model.keras']
"""

import contextlib
import json
import os
import pathlib
import shutil
import socket
import time
import zipfile

from kdl.errors import ConfigError, DataError, RunError

NEW, OLD = ".kdl-new", ".kdl-old"
LOCK_FILE = ".kdl-lock"
_held = {}    # resolved run directory -> how many nested `lock`s this process holds on it


def _siblings(path):
    path = pathlib.Path(path)
    return path.with_name(f".{path.name}{NEW}"), path.with_name(f".{path.name}{OLD}")


def recover(path, clean=True):
    """Apply the recovery rule to run directory `path` (see the module docstring); with
    `clean=False` (readers) only rename a complete old directory back, delete nothing."""
    path = pathlib.Path(path)
    new, old = _siblings(path)
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    if clean:
        for leftover in (new, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def remove(path):
    """Remove the file or folder `path` if it is there (a RunError if it cannot be removed)."""
    path = pathlib.Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as error:
        raise RunError(f"cannot remove {str(path)!r}: {error.strerror or error}") from None


def write_directory(path, fill, replaces=(), keep_others=True):
    """Write directory `path` atomically: `fill(tmp)` writes the new contents into a temporary
    sibling folder, which then replaces `path` whole. Files of the old `path` that `fill` did
    not write are carried over, except the names in `replaces` (none if not `keep_others`)."""
    path = pathlib.Path(path)
    new, old = _siblings(path)
    try:
        recover(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"cannot save to {str(path)!r}: it is a file, not a directory")
        new.mkdir(parents=True)
        if path.is_dir():
            shutil.copymode(path, new)      # never widen (or narrow) the permissions of a user's folder
    except OSError as error:
        raise RunError(f"cannot write the directory {str(path)!r}: {error.strerror or error} "
                       f"({error.filename or path}); choose a writable folder") from None
    try:
        fill(new)
        if path.is_dir() and keep_others:
            written = {p.name for p in new.iterdir()}
            for item in path.iterdir():
                if item.name not in written and item.name not in replaces:
                    _carry(item, new / item.name)
        if path.is_dir():
            os.replace(path, old)    # a kill here or below: recover() renames `old` back
        os.replace(new, path)
    except OSError as error:
        shutil.rmtree(new, ignore_errors=True)
        recover(path)
        raise RunError(f"cannot write the directory {str(path)!r}: {error.strerror or error} "
                       f"({error.filename or path}); the previous contents are unchanged") from None
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        recover(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_file(path, write):
    """`write(tmp)` writes a temporary file beside `path`, which then replaces `path` in one
    rename: a reader sees the old file or the new one, never half of one. A failed write leaves
    the old file and raises RunError naming the path. Returns the path."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):      # a full disk, a read-only folder: one clear line
            raise RunError(f"cannot write {str(path)!r}: {error.strerror or error}") from None
        raise
    return path


def _carry(source, target):
    """Hard-link (or copy, across file systems) a file or folder into the new directory; a
    symbolic link is carried as the same link."""
    if source.is_symlink():
        os.symlink(os.readlink(source), target, target_is_directory=source.is_dir())
    elif source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


@contextlib.contextmanager
def lock(path):
    """Hold run directory `path` (created if missing) for this process while the block runs;
    nested locks on the same directory in one process are one lock. Raises RunError naming the
    holder when another live process holds it. A directory it created that is still empty at the
    end (the block failed before writing, e.g. on a bad model option) is removed again."""
    path = pathlib.Path(path)
    key = path.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot write the directory {str(path)!r}: {error.strerror or error} "
                       f"({error.filename or path}); choose a writable folder") from None
    file = path / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    _acquire(file, me)
    _held[key] = 1
    try:
        yield path
    finally:
        del _held[key]
        if _read_lock(file) == me:
            file.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):     # not empty: the run wrote something; keep it
                path.rmdir()


def _acquire(file, me):
    for _ in range(3):
        try:
            descriptor = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(file)
            if not _stale(holder, file):
                raise RunError(f"{str(file.parent)!r} is in use by process {holder.get('pid')} on "
                               f"{holder.get('host')} since {holder.get('since')} (its lock file is "
                               f"{file.name}); wait for it to finish, or choose another directory. "
                               "A lock left by a process that no longer runs is taken over.") from None
            aside = file.with_name(f"{file.name}.stale-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                os.replace(file, aside)          # one taker wins the rename
                if _read_lock(aside) != holder:  # it was renewed meanwhile: give it back
                    os.replace(aside, file)
                aside.unlink(missing_ok=True)
            continue
        except OSError as error:
            raise RunError(f"cannot write {str(file)!r}: {error.strerror or error}") from None
        with os.fdopen(descriptor, "w") as out:
            json.dump(me, out)
        return
    raise RunError(f"could not take the lock {str(file)!r}: other processes keep taking it")


def _read_lock(file):
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return {}


def _stale(holder, file):
    """True for the lock of a process on this host that no longer runs, or an empty lock file
    older than a minute (its writer was killed before writing it)."""
    if not holder:
        try:
            return time.time() - file.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, KeyError, TypeError):
        return False
    return False


def load_model(path, unsafe=False):
    """A keras.Model from a `.keras` file, uncompiled, in safe mode unless `unsafe`.

    Raises DataError for a missing or unreadable file and ConfigError for a file with a
    `Lambda` layer (Python code) when `unsafe` is False.
    """
    import keras

    import kdl.models  # noqa: F401  (registers kdl's Keras classes, e.g. AudioFeatures, for the file)

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"no model file {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{str(path)!r} is not a Keras model file: a .keras file is a zip archive "
                        f"written by model.save() or recipe.save() (is it truncated or corrupt?)")
    if not unsafe:
        lambdas = _lambda_layers(path)
        if lambdas:
            raise ConfigError(_unsafe_message(path, f"holds Lambda layer(s) {', '.join(lambdas)}"))
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as error:
        if "safe_mode" in str(error):
            raise ConfigError(_unsafe_message(path, "holds Python code")) from None
        raise DataError(f"cannot load the model in {str(path)!r}: {error}") from None
    except Exception as error:  # a corrupt archive, unknown layer classes, bad weights: any is a bad file
        raise DataError(f"cannot load the model in {str(path)!r}: {type(error).__name__}: "
                        f"{str(error)[:500]}") from None


def _unsafe_message(path, what):
    return (f"refusing to load {str(path)!r}: it {what}, and loading it would run Python code "
            "stored in the file. Only if you trust its source, load it with "
            "kdl.recipes.load(path, unsafe=True) or `kdl ... --unsafe`.")


def _lambda_layers(path):
    """Names of the Lambda layers in a .keras file's config.json (read as data, nothing run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{str(path)!r} is not a Keras model file (config.json: {error})") from None
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                found.append(repr((node.get("config") or {}).get("name", "?")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found
