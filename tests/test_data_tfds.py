"""kdl.data.tfds_builder: a "tfds:NAME" source that cannot be downloaded fails within seconds with a
clear DataError, and leaves the data directory as it was.

The network is taken away inside the test (every host name fails to resolve, as on a machine
without network), so the tests are the same on a machine that has one."""

import os
import socket
import time

import pytest

from kdl.data import load_parallel, load_texts, tfds_builder
from kdl.data.tfds_builder import prepared_tfds_builder
from kdl.errors import DataError

HANG_GUARD_SECONDS = 60      # TFDS alone retries for minutes (about 200 s for mnist): a hang guard


@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def offline(monkeypatch):
    """No network: every name lookup fails (what urllib3 and the probe both call first)."""
    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def listing(folder):
    return sorted(os.path.relpath(os.path.join(top, name), folder)
                  for top, folders, files in os.walk(folder) for name in folders + files)


@pytest.mark.parametrize("source, load", [
    ("tfds:mnist", lambda source, root: prepared_tfds_builder(source, root)),
    ("tfds:imdb_reviews", lambda source, root: load_texts(source, data_root=root)),
    ("tfds:ted_hrlr_translate/pt_to_en", lambda source, root: load_parallel(source, data_root=root,
                                                                             source_language="pt",
                                                                             target_language="en")),
])
def test_an_offline_tfds_source_fails_fast_and_leaves_no_data_directory(tfds, offline, tmp_path, source,
                                                                        load):
    root = tmp_path / "tensorflow_datasets"
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"TFDS dataset '{source[5:]}' is not in data_dir .* and cannot be "
                                        r"downloaded: \S+:\d+ \(for https?://\S+\) cannot be reached "
                                        r".*no network\?"):
        load(source, root)
    assert time.perf_counter() - start < HANG_GUARD_SECONDS
    assert not root.exists() and os.listdir(tmp_path) == []


def test_an_offline_tfds_source_keeps_what_the_data_directory_held(tfds, offline, tmp_path):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "other.zip").write_bytes(b"kept")
    (tmp_path / "notes.txt").write_text("kept")
    before = listing(tmp_path)
    with pytest.raises(DataError, match="storage.googleapis.com:443 .* cannot be reached"):
        prepared_tfds_builder("tfds:mnist", tmp_path)
    assert listing(tmp_path) == before


def test_the_default_data_directory_is_not_left_behind(tfds, offline, tmp_path, monkeypatch):
    default = tmp_path / "home" / "tensorflow_datasets"       # what ~/tensorflow_datasets would be
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(default))
    with pytest.raises(DataError, match=rf"'mnist' is not in data_dir {default} and cannot be downloaded"):
        prepared_tfds_builder("tfds:mnist", None)
    assert not default.exists() and not (tmp_path / "home").exists()


def test_a_failed_prepare_removes_what_it_wrote(tfds, tmp_path, monkeypatch):
    (tmp_path / "kept.txt").write_text("kept")

    def half_prepare(self, *args, **kwargs):      # as TFDS leaves it after a failed download
        (tmp_path / "downloads" / "mnist").mkdir(parents=True)
        (tmp_path / "downloads" / "mnist" / "train.gz.tmp.123").write_bytes(b"partial")
        (tmp_path / "mnist" / "3.0.1.incomplete42").mkdir(parents=True)
        raise ConnectionError("connection reset")

    monkeypatch.setattr(type(tfds.builder("mnist", data_dir=tmp_path)), "download_and_prepare", half_prepare)
    with pytest.raises(DataError, match=r"'mnist' could not be downloaded .*connection reset"):
        prepared_tfds_builder("tfds:mnist", tmp_path)
    assert listing(tmp_path) == ["kept.txt"]


def test_the_probe_goes_to_the_proxy_the_environment_names(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    for name in ("HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert tfds_builder._connection_target("https://data.example/a.zip") == ("proxy.example", 3128)
    assert tfds_builder._connection_target("https://internal.example/a.zip") == ("internal.example", 443)
    assert tfds_builder._connection_target("ftp://data.example/a.zip") is None


def test_a_host_that_does_not_answer_in_time_is_no_network(tfds, tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_builder, "PROBE_SECONDS", 0.2)
    monkeypatch.setattr(tfds_builder, "_connect", lambda host, port: time.sleep(10))  # a lookup that hangs
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"googleapis.com:443 .* cannot be reached \(no answer in 0.2 s\)"):
        prepared_tfds_builder("tfds:mnist", tmp_path / "tfds")
    assert time.perf_counter() - start < 5 and not (tmp_path / "tfds").exists()   # not waited for
