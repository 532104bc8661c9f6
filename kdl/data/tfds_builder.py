"""TensorFlow Datasets sources ("tfds:NAME"): `prepared_tfds_builder`, the builder of a dataset,
downloaded and prepared, or a DataError that says why not, within seconds.

Offline, TFDS itself retries every download with back-off for minutes (urllib3, 10 retries per
file) and then leaves `downloads/` and a half-made dataset folder in its data directory. Here a
dataset that is not prepared yet is downloaded only once each host it downloads from
(`builder.url_infos`, or the proxy that reaches it) answers a TCP connection within
`PROBE_SECONDS`; and when preparing fails, whatever it created in the data directory is removed,
so a failed load leaves the data directory as it was (no `~/tensorflow_datasets` where there was
none). The probe is skipped when `download_and_prepare` is not TFDS's own (`tfds.testing.mock_data`
replaces it with a no-op).
"""

import difflib
import os
import pathlib
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request

from kdl.errors import DataError

PROBE_SECONDS = 5.0     # how long each download host may take to accept a connection
PROBED_HOSTS = 4        # at most this many distinct hosts are probed
CLEANED_DEPTH = 3       # new entries this deep under the data directory are removed after a failure
DEFAULT_HOST = "storage.googleapis.com"   # TFDS's own mirror: probed when a dataset lists no URLs


def prepared_tfds_builder(source, data_root):
    """The TFDS builder of "tfds:NAME", downloaded and prepared (into `data_root` if given, else
    TFDS's data directory, `$TFDS_DATA_DIR` or ~/tensorflow_datasets)."""
    import tensorflow_datasets as tfds  # slow to import: only TFDS sources need it

    name = source.removeprefix("tfds:")
    root = pathlib.Path(os.fspath(data_root) if data_root else tfds.core.constants.DATA_DIR).expanduser()
    listed = {root: _entries(root)}     # data directory -> what it held before
    try:
        builder = tfds.builder(name, data_dir=data_root and os.fspath(data_root))
    except tfds.core.DatasetNotFoundError as error:
        _remove_new_entries(listed)
        close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False), n=5)
        raise DataError(f"unknown TFDS dataset {name!r}; close matches: {close or 'none'}") from error
    if builder.is_prepared():
        return builder
    root = pathlib.Path(os.fspath(builder.data_dir_root)).expanduser()
    listed.setdefault(root, _entries(root))     # TFDS may have chosen another registered directory
    try:
        if _downloads_with_tfds(builder):
            _check_hosts_reachable(name, builder, root)
        builder.download_and_prepare()
    except DataError:
        _remove_new_entries(listed)
        raise
    except Exception as error:  # no network, a missing extra, a bad data_dir: each raises its own type
        _remove_new_entries(listed)
        raise DataError(
            f"TFDS dataset {name!r} could not be downloaded or found in data_dir {root}: {error}"
        ) from error
    return builder


def _downloads_with_tfds(builder):
    """Whether `builder.download_and_prepare` is TFDS's own, which downloads with retries; not
    when replaced (`tfds.testing.mock_data` makes it a no-op that needs no network)."""
    method = getattr(type(builder), "download_and_prepare", None)
    return getattr(method, "__module__", "").startswith("tensorflow_datasets.core.")


def _check_hosts_reachable(name, builder, root):
    """A DataError naming the first host the dataset downloads from that does not accept a TCP
    connection within PROBE_SECONDS (through the proxy the environment names, if any)."""
    urls = sorted(getattr(builder, "url_infos", None) or {}) or [f"https://{DEFAULT_HOST}/"]
    targets = {}
    for url in urls:
        target = _connection_target(url)
        if target is not None:
            targets.setdefault(target, url)
        if len(targets) == PROBED_HOSTS:
            break
    problems = {}        # (host, port) -> why it cannot be reached, or None; filled by the probes
    probes = [threading.Thread(target=lambda t: problems.__setitem__(t, _connect(*t)), args=(target,),
                               daemon=True) for target in targets]   # daemon: a hung lookup is not waited for
    deadline = time.monotonic() + PROBE_SECONDS + 1
    for probe in probes:
        probe.start()
    for probe in probes:
        probe.join(max(deadline - time.monotonic(), 0))
    for (host, port), url in targets.items():
        problem = problems.get((host, port), f"no answer in {PROBE_SECONDS:g} s")
        if problem:
            raise DataError(
                f"TFDS dataset {name!r} is not in data_dir {root} and cannot be downloaded: "
                f"{host}:{port} (for {url}) cannot be reached ({problem}); no network? Prepare it on a "
                f"machine that has one (tfds.builder({name!r}).download_and_prepare()) and copy its "
                f"folder {builder.name!r} into {root}, or point data_root (--data-root) at a data "
                "directory that holds it")


def _connection_target(url):
    """(host, port) that a download of `url` connects to first: the proxy for it, or its host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None          # ftp:// and the like: TFDS does not retry these
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return proxied.hostname, proxied.port or (443 if proxied.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _connect(host, port):
    """None when `host:port` accepts a TCP connection within PROBE_SECONDS, else why not."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return None
    except OSError as error:
        return str(error) or type(error).__name__


def _entries(root, depth=CLEANED_DEPTH):
    """Every path under `root` (and `root` itself) down to `depth` levels, if it exists."""
    found, level = set(), [root] if root.exists() else []
    found.update(level)
    for _ in range(depth):
        level = [child for folder in level if folder.is_dir() and not folder.is_symlink()
                 for child in _children(folder)]
        found.update(level)
    return found


def _children(folder):
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _remove_new_entries(listed):
    """Remove what appeared under each data directory (down to CLEANED_DEPTH) since it was listed
    (`listed`: directory -> its `_entries` then): the top-most new entries, with what they hold."""
    new = {path for root, before in listed.items() for path in _entries(root) - before}
    for path in sorted(new, key=lambda p: len(p.parts)):
        if not os.path.lexists(path):
            continue            # inside a folder removed already
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
