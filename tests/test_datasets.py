"""Tests for ptbfast.datasets. The downloads come from a local HTTP server, never the internet."""

import functools
import hashlib
import http.client
import http.server
import io
import random
import tarfile
import threading
import zlib

import pytest

from ptbfast import datasets
from ptbfast.reader import DataError

FAKE = {
    "ptb.train.txt": b" the cat sat \n the dog \n",
    "ptb.valid.txt": b" the cat \n",
    "ptb.test.txt": b" the dog sat \n",
}
FAKE_MD5 = {name: hashlib.md5(data).hexdigest() for name, data in FAKE.items()}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No real data, cache or proxy leaks in: HOME is a fresh directory."""
    for var in ("PTBFAST_DATA", "PTBFAST_CACHE", "http_proxy", "HTTP_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1; yields ``(directory, base_url)``."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_archive(path, files=FAKE, extra=()):
    """A simple-examples.tgz lookalike: README, a data dir, ``files`` and then ``extra`` members."""
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, "simple-examples/README", b"fake\n")
        folder = tarfile.TarInfo("simple-examples/data")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in files.items():
            add_file(tar, f"simple-examples/data/{name}", data)
        for member in extra:
            member(tar)
    return path


def write_ptb(directory, files=FAKE):
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


# --- download ----------------------------------------------------------------------------------


def test_download_extracts_verifies_and_caches(server, tmp_path):
    root, base = server
    build_archive(root / "simple-examples.tgz")
    cache = tmp_path / "cache" / "ptb"  # parents are created
    got = datasets.ptb(download=True, cache_dir=cache, url=f"{base}/simple-examples.tgz",
                       md5=FAKE_MD5, timeout=10)
    assert got == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(FAKE)  # no temp files left
    for name, data in FAKE.items():
        assert (cache / name).read_bytes() == data
    # Now cached: no network needed, even with a URL that cannot work.
    (root / "simple-examples.tgz").unlink()
    assert datasets.ptb(download=True, cache_dir=cache, url=f"{base}/gone.tgz") == cache


def test_download_into_default_cache_under_home(server, tmp_path):
    root, base = server
    build_archive(root / "a.tgz")
    got = datasets.ptb(download=True, url=f"{base}/a.tgz", md5=FAKE_MD5, timeout=10)
    assert got == tmp_path / "home" / ".cache" / "ptbfast" / "ptb"
    assert (got / "ptb.train.txt").read_bytes() == FAKE["ptb.train.txt"]


def test_md5_mismatch_raises_and_leaves_nothing(server, tmp_path):
    root, base = server
    build_archive(root / "a.tgz")
    cache = tmp_path / "cache"
    wrong = dict(FAKE_MD5, **{"ptb.test.txt": "0" * 32})
    with pytest.raises(DataError, match="checksum mismatch for ptb.test.txt"):
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", md5=wrong, timeout=10)
    assert list(cache.iterdir()) == []


def test_default_md5_rejects_fake_files(server, tmp_path):
    root, base = server
    build_archive(root / "a.tgz")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch"):
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", timeout=10)
    assert list(cache.iterdir()) == []


def test_traversal_and_absolute_members_are_ignored(server, tmp_path):
    root, base = server
    build_archive(root / "a.tgz", extra=[
        lambda tar: add_file(tar, "../evil", b"pwned"),
        lambda tar: add_file(tar, "simple-examples/data/../../../evil2", b"pwned"),
        lambda tar: add_file(tar, str(tmp_path / "evil3"), b"pwned"),
    ])
    cache = tmp_path / "deep" / "cache"
    datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", md5=FAKE_MD5, timeout=10)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FAKE)
    for path in (tmp_path / "deep" / "evil", tmp_path / "evil", tmp_path / "evil2",
                 tmp_path / "evil3"):
        assert not path.exists()


def symlink_member(tar):
    info = tarfile.TarInfo("simple-examples/data/ptb.valid.txt")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar.addfile(info)


def hardlink_member(tar):
    info = tarfile.TarInfo("simple-examples/data/ptb.valid.txt")
    info.type = tarfile.LNKTYPE
    info.linkname = "simple-examples/README"
    tar.addfile(info)


@pytest.mark.parametrize("link", [symlink_member, hardlink_member])
def test_link_in_place_of_data_file_is_rejected(server, tmp_path, link):
    root, base = server
    files = {k: v for k, v in FAKE.items() if k != "ptb.valid.txt"}
    build_archive(root / "a.tgz", files=files, extra=[link])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a regular file"):
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", md5=FAKE_MD5,
                     timeout=10)
    assert list(cache.iterdir()) == []


def test_archive_missing_a_file(server, tmp_path):
    root, base = server
    files = {k: v for k, v in FAKE.items() if k != "ptb.test.txt"}
    build_archive(root / "a.tgz", files=files)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="lacks simple-examples/data/ptb.test.txt"):
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", md5=FAKE_MD5,
                     timeout=10)
    assert list(cache.iterdir()) == []


def test_not_an_archive(server, tmp_path):
    root, base = server
    (root / "a.tgz").write_bytes(b"<html>not found</html>")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a readable .tgz"):
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", md5=FAKE_MD5,
                     timeout=10)
    assert list(cache.iterdir()) == []


def test_http_error(server, tmp_path):
    _, base = server
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="404") as err:
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/missing.tgz", timeout=10)
    assert f"{base}/missing.tgz" in str(err.value)
    assert list(cache.iterdir()) == []


def test_corrupt_gzip_stream(server, tmp_path):
    # A gzip file whose deflate stream turns invalid (a block of the reserved type 3) past tarfile's
    # first read: zlib.error, which is not an OSError, while the members are read.
    root, base = server
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        add_file(t, "simple-examples/README", random.Random(0).randbytes(1 << 18))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(tar.getvalue()[:1 << 17]) + deflate.flush(zlib.Z_FULL_FLUSH) + b"\x07\x00\x00\x00"
    (root / "a.tgz").write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body)  # (gzip's header)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a readable .tgz archive: Error -3 while decompressing data"):
        datasets.ptb(download=True, cache_dir=cache, url=f"{base}/a.tgz", md5=FAKE_MD5, timeout=10)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("error", [http.client.BadStatusLine("SSH-2.0-OpenSSH"),
                                   http.client.IncompleteRead(b"partial", 100)])
def test_a_server_that_does_not_speak_http(monkeypatch, tmp_path, error):
    def urlopen(*args, **kwargs):
        raise error

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="downloading http://example.invalid/a.tgz failed"):
        datasets.ptb(download=True, cache_dir=cache, url="http://example.invalid/a.tgz", timeout=10)
    assert list(cache.iterdir()) == []


def test_a_cache_directory_that_is_a_file_is_named(tmp_path):
    (tmp_path / "afile").write_text("hi")
    with pytest.raises(DataError, match="cache directory .*afile is a file: name a directory"):
        datasets.download_ptb(tmp_path / "afile", url="http://example.invalid/a.tgz", timeout=1)


def test_files_in_the_cache_are_verified(tmp_path):
    for name, data in FAKE.items():
        (tmp_path / name).write_bytes(data)
    assert datasets.verify_ptb_files(tmp_path, md5=FAKE_MD5) == tmp_path
    (tmp_path / "ptb.valid.txt").write_bytes(b"changed\n")
    with pytest.raises(DataError, match=f"{tmp_path / 'ptb.valid.txt'} has md5 [0-9a-f]{{32}}, not "
                                        f"{FAKE_MD5['ptb.valid.txt']}: it is damaged"):
        datasets.verify_ptb_files(tmp_path, md5=FAKE_MD5)


def test_no_home_directory_says_how_to_get_the_data(monkeypatch):
    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(datasets.Path, "home", staticmethod(no_home))
    with pytest.raises(DataError, match="no home directory for the PTB cache.*--data-path DIR.*--cache-dir DIR"):
        datasets.ptb()

# --- resolution order --------------------------------------------------------------------------


def test_resolution_order_explicit_then_env_then_cache(monkeypatch, tmp_path):
    explicit = write_ptb(tmp_path / "explicit")
    env = write_ptb(tmp_path / "env")
    cache = write_ptb(tmp_path / "cache")
    monkeypatch.setenv("PTBFAST_DATA", str(env))
    monkeypatch.setenv("PTBFAST_CACHE", str(cache))
    assert datasets.ptb(data_path=explicit) == explicit
    assert datasets.ptb(data_path=str(explicit)) == explicit
    assert datasets.ptb() == env
    monkeypatch.delenv("PTBFAST_DATA")
    assert datasets.ptb() == cache
    other_cache = write_ptb(tmp_path / "other")
    assert datasets.ptb(cache_dir=other_cache) == other_cache  # argument beats $PTBFAST_CACHE
    monkeypatch.delenv("PTBFAST_CACHE")
    home_cache = write_ptb(tmp_path / "home" / ".cache" / "ptbfast" / "ptb")
    assert datasets.ptb() == home_cache


def test_incomplete_cache_is_not_used(monkeypatch, tmp_path):
    cache = write_ptb(tmp_path / "cache", {"ptb.train.txt": b" a \n"})
    with pytest.raises(DataError, match="PTB data not found"):
        datasets.ptb(cache_dir=cache)


def test_bad_explicit_or_env_path_is_an_error(monkeypatch, tmp_path):
    write_ptb(tmp_path / "cache")
    monkeypatch.setenv("PTBFAST_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        datasets.ptb(data_path=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    monkeypatch.setenv("PTBFAST_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="PTBFAST_DATA") as err:
        datasets.ptb()
    assert str(tmp_path / "nowhere") in str(err.value)


def test_explicit_path_may_be_wikitext_style(tmp_path):
    directory = tmp_path / "wt"
    write_ptb(directory, {"train.txt": b" a \n", "valid.txt": b" a \n", "test.txt": b" a \n"})
    assert datasets.ptb(data_path=directory) == directory


def test_no_data_message_says_how_to_get_it(tmp_path):
    cache = tmp_path / "empty-cache"
    with pytest.raises(DataError) as err:
        datasets.ptb(cache_dir=cache)
    message = str(err.value)
    for hint in ("--data-path", "PTBFAST_DATA", "ptbfast.datasets.ptb(download=True)",
                 "python -m ptbfast download", datasets.PTB_URL, str(cache)):
        assert hint in message
    assert not cache.exists()  # looking does not create the cache
