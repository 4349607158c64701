"""data_prep: resumable download, safe extraction, corpus manifests, speaker-disjoint split.

Downloads go to a local HTTP server (127.0.0.1, Range support, optional cut connections);
corpus tests use the real recordings of ../shared/data (skipped when that folder is absent).
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import soundfile as sf

from asr.manifest import read_manifest
from data_prep import an4, fsdd, librispeech, split, word_clips
from data_prep.common import (
    DataPrepError,
    DownloadError,
    UnsafeArchiveError,
    combine_manifests,
    download_file,
    safe_extract,
    safe_extract_zip,
    speaker_split,
)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ local HTTP server


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; `requests` logs (path, Range header)."""

    files: dict[str, bytes] = field(default_factory=dict)
    cuts: list[int] = field(default_factory=list)  # per request: close after this many body bytes
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base_url: str = ""


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            body = state.files.get(self.path)
            state.requests.append((self.path, self.headers.get("Range")))
            if body is None:
                self.send_error(404)
                return
            start = self._range_start(len(body))
            if start is None:
                return
            self._send_body(body, start)

        def _range_start(self, size: int) -> int | None:
            header = self.headers.get("Range")
            if not header or state.ignore_range:
                self.send_response(200)
                return 0
            start = int(re.fullmatch(r"bytes=(\d+)-", header).group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            return start

        def _send_body(self, body: bytes, start: int) -> None:
            rest = body[start:]
            self.send_header("Content-Length", str(len(rest)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.cuts:
                self.wfile.write(rest[: state.cuts.pop(0)])
                self.wfile.flush()
                self.close_connection = True  # the client sees EOF before Content-Length bytes
                return
            self.wfile.write(rest)

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> ServerState:
    """A threaded HTTP server on 127.0.0.1 with Range support, torn down after the test.

    Proxy variables are cleared so that urllib talks to it directly on a CI runner behind a proxy.
    """
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


PAYLOAD = random.Random(0).randbytes(300_000)


# ------------------------------------------------------------------------------------- download


def test_download_resumes_after_connection_cut(server: ServerState, tmp_path: Path) -> None:
    server.files["/blob.bin"] = PAYLOAD
    server.cuts = [100_000]
    target = download_file(f"{server.base_url}/blob.bin", tmp_path / "blob.bin", _md5(PAYLOAD), chunk=4096, retry_delay=0)
    assert target.read_bytes() == PAYLOAD
    assert server.requests == [("/blob.bin", None), ("/blob.bin", "bytes=100000-")]
    assert not (tmp_path / "blob.bin.part").exists()


def test_interrupted_download_keeps_part_and_next_run_resumes(server: ServerState, tmp_path: Path) -> None:
    server.files["/blob.bin"] = PAYLOAD
    server.cuts = [1000, 2000]
    url, target = f"{server.base_url}/blob.bin", tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="resumes"):
        download_file(url, target, _md5(PAYLOAD), retries=1, retry_delay=0)
    assert not target.exists()
    assert (tmp_path / "blob.bin.part").stat().st_size == 3000
    download_file(url, target, _md5(PAYLOAD), retry_delay=0)
    assert target.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/blob.bin", "bytes=3000-")


def test_server_answering_200_to_range_restarts_from_zero(server: ServerState, tmp_path: Path) -> None:
    server.files["/blob.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "blob.bin.part").write_bytes(b"x" * 5000)  # stale prefix that must not survive
    target = download_file(f"{server.base_url}/blob.bin", tmp_path / "blob.bin", _md5(PAYLOAD), retry_delay=0)
    assert target.read_bytes() == PAYLOAD
    assert server.requests == [("/blob.bin", "bytes=5000-")]


def test_complete_part_file_answered_416_is_accepted(server: ServerState, tmp_path: Path) -> None:
    server.files["/blob.bin"] = PAYLOAD
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    target = download_file(f"{server.base_url}/blob.bin", tmp_path / "blob.bin", _md5(PAYLOAD), retry_delay=0)
    assert target.read_bytes() == PAYLOAD


def test_bad_checksum_is_rejected_and_file_removed(server: ServerState, tmp_path: Path) -> None:
    server.files["/blob.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        download_file(f"{server.base_url}/blob.bin", tmp_path / "blob.bin", "0" * 32, retry_delay=0)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_skipped_only_with_the_right_md5(server: ServerState, tmp_path: Path) -> None:
    server.files["/blob.bin"] = PAYLOAD
    target = tmp_path / "blob.bin"
    target.write_bytes(PAYLOAD)
    download_file(f"{server.base_url}/blob.bin", target, _md5(PAYLOAD))
    assert server.requests == []
    target.write_bytes(b"corrupt")
    download_file(f"{server.base_url}/blob.bin", target, _md5(PAYLOAD), retry_delay=0)
    assert target.read_bytes() == PAYLOAD and len(server.requests) == 1


def test_http_404_fails_at_once_with_one_line(server: ServerState, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_file(f"{server.base_url}/missing.tar.gz", tmp_path / "x.tar.gz", None, retry_delay=0)
    assert "\n" not in str(info.value)
    assert len(server.requests) == 1


# ------------------------------------------------------------------------------------ extraction


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write a .tar.gz with the given members (data None for links and folders)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize(
    "evil",
    [
        _file("../evil"),
        _file("ok/../../evil"),
        _file("/tmp/absolute_evil"),
        _link("ok/link", "../../evil", tarfile.SYMTYPE),
        _link("ok/abs_link", "/etc/passwd", tarfile.SYMTYPE),
        _link("ok/hard", "../evil", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"],
)
def test_safe_extract_rejects_escaping_members(tmp_path: Path, evil: tuple[tarfile.TarInfo, bytes | None]) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", [_file("ok/good.txt"), evil])
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, dest)
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not (dest / "ok" / "good.txt").exists(), "nothing is extracted when one member is unsafe"
    assert not (dest / ".evil.tar.gz.complete").exists()


def test_safe_extract_is_idempotent_and_allows_inner_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "good.tar.gz", [_file("a/b.txt", b"hello"), _link("a/c.txt", "b.txt", tarfile.SYMTYPE)])
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "a" / "b.txt").read_bytes() == b"hello"
    assert (dest / "a" / "c.txt").read_bytes() == b"hello"
    assert (dest / ".good.tar.gz.complete").is_file()
    (dest / "a" / "b.txt").unlink()
    safe_extract(archive, dest)  # the marker makes this a no-op
    assert not (dest / "a" / "b.txt").exists()


def test_safe_extract_reports_a_broken_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball at all")
    with pytest.raises(DataPrepError, match="bad.tar.gz"):
        safe_extract(bad, tmp_path / "dest")


# ------------------------------------------------------- end to end: served LibriSpeech tarball


DEV_CLEAN_UTTS = ("2412-153948-0000", "2412-153948-0001")


@pytest.fixture
def fake_librispeech_tar(shared_data: Path, tmp_path: Path) -> Path:
    """dev-clean.tar.gz with two real flac files and their trans.txt in the LibriSpeech layout."""
    source = shared_data / "librispeech" / "dev-clean" / "2412" / "153948"
    tree = tmp_path / "build" / "LibriSpeech" / "dev-clean" / "2412" / "153948"
    tree.mkdir(parents=True)
    for utt in DEV_CLEAN_UTTS:
        shutil.copy(source / f"{utt}.flac", tree / f"{utt}.flac")
    lines = [line for line in (source / "2412-153948.trans.txt").read_text().splitlines()
             if line.split()[0] in DEV_CLEAN_UTTS]
    (tree / "2412-153948.trans.txt").write_text("\n".join(lines) + "\n")
    archive = tmp_path / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "LibriSpeech", arcname="LibriSpeech")
    return archive


def test_download_extract_prepare_librispeech(
    server: ServerState, fake_librispeech_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = fake_librispeech_tar.read_bytes()
    server.files["/resources/12/dev-clean.tar.gz"] = data
    server.cuts = [len(data) // 3]
    monkeypatch.setitem(librispeech.LIBRISPEECH_PARTS, "dev-clean", ("unused", _md5(data)))
    monkeypatch.setattr("data_prep.common.time.sleep", lambda s: None)

    corpus = librispeech.download_librispeech(tmp_path / "dl", ["dev-clean"], mirror=f"{server.base_url}/resources/12")
    assert server.requests[1][1] == f"bytes={len(data) // 3}-"
    assert corpus == tmp_path / "dl" / "LibriSpeech"

    manifests = librispeech.prepare_librispeech(tmp_path / "dl", tmp_path / "manifests", jobs=2)
    assert list(manifests) == ["dev-clean"]
    utts = read_manifest(manifests["dev-clean"], check_audio=True)
    assert [u.utt_id for u in utts] == list(DEV_CLEAN_UTTS)
    assert {u.speaker for u in utts} == {"2412"}
    assert utts[0].text.startswith("IF THE READER WILL EXCUSE ME")
    for utt in utts:
        info = sf.info(str(utt.audio_path))
        assert utt.sample_rate == 16000 == info.samplerate
        assert utt.duration_s == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert utt.audio_path.resolve().is_relative_to((tmp_path / "dl" / "LibriSpeech" / "dev-clean").resolve())

    # a second run downloads nothing and does not extract again
    before = len(server.requests)
    librispeech.download_librispeech(tmp_path / "dl", ["dev-clean"], mirror=f"{server.base_url}/resources/12")
    assert len(server.requests) == before


def test_download_librispeech_rejects_unknown_part(tmp_path: Path) -> None:
    with pytest.raises(DataPrepError, match="unknown LibriSpeech part"):
        librispeech.download_librispeech(tmp_path, ["train-clean-5000"])


def test_librispeech_md5_table_is_complete() -> None:
    assert len(librispeech.LIBRISPEECH_PARTS) == 7
    for part, (url, md5) in librispeech.LIBRISPEECH_PARTS.items():
        assert url == f"https://www.openslr.org/resources/12/{part}.tar.gz"
        assert md5 is None or re.fullmatch(r"[0-9a-f]{32}", md5)


# ------------------------------------------------------------- LibriSpeech LM resources (OpenSLR 11)


TINY_ARPA = """\\data\\
ngram 1=4

\\1-grams:
-0.60206 <s>
-0.60206 </s>
-0.60206 HELLO
-0.60206 WORLD

\\end\\
"""


def test_download_librispeech_lm_resumes_and_checks_md5(server: ServerState, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from asr.decoding.lm import load_arpa

    arpa = gzip.compress(TINY_ARPA.encode())
    vocab = b"HELLO\nWORLD\n"
    server.files["/resources/11/3-gram.pruned.1e-7.arpa.gz"] = arpa
    server.files["/resources/11/librispeech-vocab.txt"] = vocab
    server.cuts = [len(arpa) // 2]
    monkeypatch.setitem(librispeech.LIBRISPEECH_LM_FILES, "3-gram.pruned.1e-7.arpa.gz", _md5(arpa))
    monkeypatch.setitem(librispeech.LIBRISPEECH_LM_FILES, "librispeech-vocab.txt", _md5(vocab))
    monkeypatch.setattr("data_prep.common.time.sleep", lambda s: None)
    files = ["3-gram.pruned.1e-7.arpa.gz", "librispeech-vocab.txt"]
    paths = librispeech.download_librispeech_lm(tmp_path / "lm", files, mirror=f"{server.base_url}/resources/11")
    assert server.requests[:2] == [("/resources/11/3-gram.pruned.1e-7.arpa.gz", None),
                                   ("/resources/11/3-gram.pruned.1e-7.arpa.gz", f"bytes={len(arpa) // 2}-")]
    assert paths["librispeech-vocab.txt"].read_bytes() == vocab
    assert load_arpa(paths["3-gram.pruned.1e-7.arpa.gz"]).log10_prob("HELLO") == pytest.approx(-0.60206)

    before = len(server.requests)
    librispeech.download_librispeech_lm(tmp_path / "lm", files, mirror=f"{server.base_url}/resources/11")
    assert len(server.requests) == before, "complete files with the right MD5 are not fetched again"

    monkeypatch.setitem(librispeech.LIBRISPEECH_LM_FILES, "librispeech-lexicon.txt", "f" * 32)
    server.files["/resources/11/librispeech-lexicon.txt"] = b"HELLO HH AH0 L OW1\n"
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        librispeech.download_librispeech_lm(tmp_path / "lm", ["librispeech-lexicon.txt"],
                                            mirror=f"{server.base_url}/resources/11")
    assert not (tmp_path / "lm" / "librispeech-lexicon.txt").exists()


def test_librispeech_lm_table_and_unknown_file(tmp_path: Path) -> None:
    assert set(librispeech.DEFAULT_LM_FILES) <= set(librispeech.LIBRISPEECH_LM_FILES)
    assert {"3-gram.arpa.gz", "4-gram.arpa.gz", "librispeech-vocab.txt", "librispeech-lexicon.txt"} <= set(
        librispeech.LIBRISPEECH_LM_FILES)
    assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for md5 in librispeech.LIBRISPEECH_LM_FILES.values())
    with pytest.raises(DataPrepError, match="unknown LibriSpeech LM file"):
        librispeech.download_librispeech_lm(tmp_path, ["5-gram.arpa.gz"])


def test_lm_cli_downloads_only(server: ServerState, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.files["/lm/librispeech-vocab.txt"] = b"A\n"
    original = librispeech.LIBRISPEECH_LM_FILES["librispeech-vocab.txt"]
    librispeech.LIBRISPEECH_LM_FILES["librispeech-vocab.txt"] = _md5(b"A\n")
    try:
        code = librispeech.main(["--lm-dir", str(tmp_path), "--lm-files", "librispeech-vocab.txt",
                                 "--lm-mirror", f"{server.base_url}/lm"])
    finally:
        librispeech.LIBRISPEECH_LM_FILES["librispeech-vocab.txt"] = original
    assert code == 0 and (tmp_path / "librispeech-vocab.txt").read_bytes() == b"A\n"
    assert capsys.readouterr().out.startswith("librispeech-vocab.txt\t")


# ------------------------------------------------------------ FSDD: served zip of the GitHub archive


FSDD_WAV = REPO / "tests" / "data" / "fsdd_3_jackson_0_8khz.wav"
FSDD_NAMES = ("3_jackson_0.wav", "3_jackson_1.wav", "3_jackson_2.wav")  # the one real clip, three times
FSDD_PATH = f"/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{fsdd.FSDD_VERSION}.zip"


def _fsdd_zip(extra: dict[str, bytes] | None = None, names: tuple[str, ...] = FSDD_NAMES) -> bytes:
    """A GitHub-style archive: `free-spoken-digit-dataset-1.0.10/` with README and recordings/."""
    top, wav, buffer = fsdd.FSDD_DIR, FSDD_WAV.read_bytes(), io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/", b"")
        zf.writestr(f"{top}/README.md", b"# FSDD\n")
        zf.writestr(f"{top}/recordings/", b"")
        for name in names:
            zf.writestr(f"{top}/recordings/{name}", wav)
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def _leftovers(folder: Path) -> list[str]:
    """Temporary extraction folders or `.part` files left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", ".part")))


@pytest.fixture
def fsdd_server(server: ServerState, monkeypatch: pytest.MonkeyPatch) -> tuple[ServerState, str, bytes]:
    """(server, archive URL, archive bytes) with the three-clip FSDD zip served; retries do not sleep."""
    data = _fsdd_zip()
    server.files[FSDD_PATH] = data
    monkeypatch.setattr("data_prep.common.time.sleep", lambda s: None)
    return server, f"{server.base_url}{FSDD_PATH}", data


def test_download_fsdd_extract_prepare(fsdd_server: tuple[ServerState, str, bytes], tmp_path: Path) -> None:
    server, url, data = fsdd_server
    corpus = fsdd.download_fsdd(tmp_path / "dl", url, md5=_md5(data), expected_files=3)
    assert corpus == tmp_path / "dl" / fsdd.FSDD_DIR
    assert sorted(p.name for p in (corpus / "recordings").iterdir()) == list(FSDD_NAMES)
    assert (corpus / "README.md").is_file() and _leftovers(tmp_path / "dl") == []
    for folder in (corpus, tmp_path / "dl"):  # the returned folder, and the one it was downloaded into
        utts = read_manifest(fsdd.prepare_fsdd(folder, tmp_path / "out"), check_audio=True)
        assert [u.utt_id for u in utts] == [Path(n).stem for n in FSDD_NAMES]
        assert {(u.speaker, u.text, u.sample_rate) for u in utts} == {("jackson", "THREE", 8000)}
        assert utts[0].duration_s == pytest.approx(sf.info(str(FSDD_WAV)).duration, abs=1e-3)


def test_download_fsdd_second_call_downloads_nothing(fsdd_server: tuple[ServerState, str, bytes], tmp_path: Path) -> None:
    server, url, _ = fsdd_server
    corpus = fsdd.download_fsdd(tmp_path, url, expected_files=3)
    assert len(server.requests) == 1
    assert fsdd.download_fsdd(tmp_path, url, expected_files=3) == corpus
    assert len(server.requests) == 1, "corpus present: no request at all"
    shutil.rmtree(corpus)  # as if extraction had been interrupted: the kept archive is used again
    assert fsdd.download_fsdd(tmp_path, url, expected_files=3) == corpus
    assert len(server.requests) == 1 and (corpus / "recordings" / FSDD_NAMES[0]).is_file()
    with pytest.raises(DataPrepError, match=rf"{re.escape(str(corpus / 'recordings'))}: 3 recordings, expected 3000"):
        fsdd.download_fsdd(tmp_path, url)  # an existing corpus is still verified


def test_download_fsdd_resumes_a_partial_download(fsdd_server: tuple[ServerState, str, bytes], tmp_path: Path) -> None:
    server, url, data = fsdd_server
    part = tmp_path / f"{fsdd.FSDD_DIR}.zip.part"
    part.write_bytes(data[:1000])  # left by an earlier, interrupted run
    server.cuts = [len(data) // 3]  # and this run's first connection drops too
    fsdd.download_fsdd(tmp_path, url, md5=_md5(data), expected_files=3)
    assert server.requests == [(FSDD_PATH, "bytes=1000-"), (FSDD_PATH, f"bytes={1000 + len(data) // 3}-")]
    assert (tmp_path / f"{fsdd.FSDD_DIR}.zip").read_bytes() == data and not part.exists()


def test_download_fsdd_md5_mismatch(fsdd_server: tuple[ServerState, str, bytes], tmp_path: Path) -> None:
    _, url, _ = fsdd_server
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        fsdd.download_fsdd(tmp_path, url, md5="0" * 32, expected_files=3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("evil", ["../evil", f"{fsdd.FSDD_DIR}/../../evil", "/tmp/absolute_evil", "C:/evil"])
def test_download_fsdd_refuses_escaping_zip_members(server: ServerState, tmp_path: Path, evil: str) -> None:
    server.files["/evil.zip"] = _fsdd_zip({evil: b"pwned"})
    dest = tmp_path / "dl"
    with pytest.raises(UnsafeArchiveError, match="absolute path|contains '..'"):
        fsdd.download_fsdd(dest, f"{server.base_url}/evil.zip", expected_files=3)
    assert not (tmp_path / "evil").exists() and not (dest / "evil").exists()
    assert not (dest / fsdd.FSDD_DIR).exists() and _leftovers(dest) == []


def test_safe_extract_zip_refuses_symlinks_and_broken_zips(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("top/link")
    link.external_attr = 0o120777 << 16
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/ok.txt", b"ok")
        zf.writestr(link, b"/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "top").exists(), "nothing is extracted when one member is unsafe"
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataPrepError, match="bad.zip: cannot extract"):
        safe_extract_zip(tmp_path / "bad.zip", tmp_path / "out")


@pytest.mark.parametrize(
    "names, extra, message",
    [
        (FSDD_NAMES[:2], {}, r"2 recordings, expected 3$"),
        (FSDD_NAMES, {f"{fsdd.FSDD_DIR}/recordings/notes.wav": b"x"}, r"1 file name\(s\) not .*'notes.wav'"),
    ],
    ids=["count", "bad-name"],
)
def test_download_fsdd_refuses_unexpected_content(server: ServerState, tmp_path: Path, names: tuple[str, ...],
                                                  extra: dict[str, bytes], message: str) -> None:
    server.files["/fsdd.zip"] = _fsdd_zip(extra, names)
    with pytest.raises(DataPrepError, match=rf"{re.escape(str(tmp_path / fsdd.FSDD_DIR))} .*not installed\): {message}"):
        fsdd.download_fsdd(tmp_path, f"{server.base_url}/fsdd.zip", expected_files=3)
    assert not (tmp_path / fsdd.FSDD_DIR).exists() and _leftovers(tmp_path) == []
    if not extra:  # the count alone was wrong: skipping it installs from the kept archive, no new download
        assert (fsdd.download_fsdd(tmp_path, f"{server.base_url}/fsdd.zip", expected_files=None) / "recordings").is_dir()
        assert len(server.requests) == 1


def test_fsdd_download_cli(fsdd_server: tuple[ServerState, str, bytes], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    server, url, _ = fsdd_server
    args = ["--download", "--corpus", str(tmp_path / "dl"), "--out", str(tmp_path / "out"), "--url", url]
    assert fsdd.main(args) == 1 and "3 recordings, expected 3000" in capsys.readouterr().err
    assert fsdd.main(args + ["--expected-files", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "fsdd.tsv")
    assert len(read_manifest(tmp_path / "out" / "fsdd.tsv", check_audio=True)) == 3
    assert fsdd.main(["--download", str(tmp_path / "dl"), "--out", str(tmp_path / "o2"), "--expected-files", "0"]) == 0
    assert len(server.requests) == 1, "an4-style --download DIR finds the corpus already there"


# ---------------------------------------------------------------------- real corpora (shared data)


def _reference(manifest: Path) -> dict[str, tuple[str, float, int, str]]:
    return {u.utt_id: (u.speaker, u.duration_s, u.sample_rate, u.text) for u in read_manifest(manifest)}


def _assert_matches_reference(manifest: Path, reference: Path, upper: bool = False) -> None:
    ours, ref = _reference(manifest), _reference(reference)
    assert ours.keys() == ref.keys()
    for utt_id, (speaker, duration, rate, text) in ours.items():
        ref_speaker, ref_duration, ref_rate, ref_text = ref[utt_id]
        assert (speaker, rate) == (ref_speaker, ref_rate), utt_id
        assert duration == pytest.approx(ref_duration, abs=2e-3), utt_id
        assert text == (ref_text.upper() if upper else ref_text), utt_id


def test_prepare_an4_shared(shared_data: Path, tmp_path: Path) -> None:
    manifests = an4.prepare_an4(shared_data / "an4", tmp_path)
    utts = read_manifest(manifests["train"], check_audio=True)
    assert len(utts) == 860 and len({u.speaker for u in utts}) == 67
    assert all(re.fullmatch(r"[A-Z' ]+", u.text) for u in utts)
    _assert_matches_reference(manifests["train"], shared_data / "an4" / "manifest.tsv")


def test_prepare_an4_missing_part_is_one_clear_error(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DataPrepError, match="no transcription for part 'test'"):
        an4.prepare_an4(shared_data / "an4", tmp_path, parts=("test",))


def test_prepare_an4_reads_sphere_files(shared_data: Path, tmp_path: Path) -> None:
    """The original tarball's layout: .sph audio, test part, a line without <s> </s>."""
    source = shared_data / "an4" / "wav" / "an4_clstk" / "fash" / "an251-fash-b.flac"
    audio, rate = sf.read(source, dtype="int16")
    corpus = tmp_path / "an4"
    (corpus / "wav" / "an4test_clstk" / "fash").mkdir(parents=True)
    (corpus / "etc").mkdir()
    sf.write(corpus / "wav" / "an4test_clstk" / "fash" / "an406-fash-b.sph", audio, rate, format="NIST", subtype="PCM_16")
    (corpus / "etc" / "an4_test.transcription").write_text("<s> YES </s> (an406-fash-b)\n")
    manifests = an4.prepare_an4(tmp_path, tmp_path / "out", parts=("test",))  # parent of an4/ works too
    [utt] = read_manifest(manifests["test"], check_audio=True)
    assert (utt.utt_id, utt.speaker, utt.text, utt.sample_rate) == ("an406-fash-b", "fash", "YES", 16000)
    assert utt.audio_path.suffix == ".sph"
    assert utt.duration_s == pytest.approx(len(audio) / rate, abs=1e-3)


AN4_CLIPS = REPO / "tests" / "data" / "an4"  # real AN4 clips of speaker mblw (FLAC)


def _an4_tarball(drop: str | None = None) -> bytes:
    """An AN4-layout .tar.gz from the real clips in tests/data: etc/ lists and wav/an4_clstk/mblw/*.flac,
    without the audio of utterance `drop` (a damaged archive)."""
    clips = sorted(AN4_CLIPS.glob("*.flac"))
    fileids = "".join(f"an4_clstk/mblw/{clip.stem}\n" for clip in clips)
    transcription = "".join(f"<s> YES </s> ({clip.stem})\n" for clip in clips)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [("an4/etc/an4_train.fileids", fileids.encode()),
                           ("an4/etc/an4_train.transcription", transcription.encode()),
                           *[(f"an4/wav/an4_clstk/mblw/{clip.name}", clip.read_bytes())
                             for clip in clips if clip.stem != drop]]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_download_an4_resumes_checks_and_prepares(server: ServerState, tmp_path: Path) -> None:
    data = _an4_tarball()
    server.files["/an4_sphere.tar.gz"] = data
    url = f"{server.base_url}/an4_sphere.tar.gz"
    (tmp_path / "an4_sphere.tar.gz.part").write_bytes(data[:500])  # left by an interrupted run
    server.cuts = [len(data) // 2]  # and this run's connection drops once too
    corpus = an4.download_an4(tmp_path, url, md5=_md5(data))
    assert server.requests == [("/an4_sphere.tar.gz", "bytes=500-"),
                               ("/an4_sphere.tar.gz", f"bytes={500 + len(data) // 2}-")]
    assert corpus == tmp_path / "an4" and an4.verify_an4(corpus) == len(list(AN4_CLIPS.glob("*.flac")))
    utts = read_manifest(an4.prepare_an4(corpus, tmp_path / "out")["train"], check_audio=True)
    assert {u.speaker for u in utts} == {"mblw"} and len(utts) == an4.verify_an4(corpus)
    an4.download_an4(tmp_path, url, md5=_md5(data))  # the archive is there: nothing is fetched again
    assert len(server.requests) == 2


def test_download_an4_refuses_a_bad_checksum_or_missing_audio(server: ServerState, tmp_path: Path) -> None:
    server.files["/an4_sphere.tar.gz"] = _an4_tarball()
    url = f"{server.base_url}/an4_sphere.tar.gz"
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        an4.download_an4(tmp_path / "a", url, md5="0" * 32)
    server.files["/an4_sphere.tar.gz"] = _an4_tarball(drop="an2-mblw-b")
    with pytest.raises(DataPrepError, match=r"1 of \d+ listed recordings are missing, e\.g\. wav/an4_clstk/mblw/an2-mblw-b"):
        an4.download_an4(tmp_path / "b", url)


def test_prepare_fsdd_shared(shared_data: Path, tmp_path: Path) -> None:
    manifest = fsdd.prepare_fsdd(shared_data / "fsdd", tmp_path)
    utts = read_manifest(manifest, check_audio=True)
    assert len(utts) == 2000
    assert {u.speaker for u in utts} == {"george", "jackson", "lucas", "yweweler"}
    assert {u.text for u in utts} == set(fsdd.DIGIT_WORDS)
    assert {u.sample_rate for u in utts} == {8000}
    _assert_matches_reference(manifest, shared_data / "fsdd" / "manifest.tsv", upper=True)


def test_prepare_librispeech_shared(shared_data: Path, tmp_path: Path) -> None:
    manifests = librispeech.prepare_librispeech(shared_data / "librispeech", tmp_path, jobs=2)
    assert sorted(manifests) == ["dev-clean", "test-other"]
    counts = {part: len(read_manifest(path, check_audio=True)) for part, path in manifests.items()}
    assert counts == {"dev-clean": 2, "test-other": 50}
    merged = tmp_path / "all.tsv"
    from asr.manifest import write_manifest

    write_manifest(merged, [u for path in manifests.values() for u in read_manifest(path)])
    _assert_matches_reference(merged, shared_data / "librispeech" / "manifest.tsv")


def test_prepare_librispeech_parallel_equals_serial_and_combines(shared_data: Path, tmp_path: Path) -> None:
    serial = librispeech.prepare_librispeech(shared_data / "librispeech", tmp_path / "serial", ["test-other"], jobs=1)
    parallel = librispeech.prepare_librispeech(shared_data / "librispeech", tmp_path / "par", ["test-other"], jobs=2)
    assert serial["test-other"].read_text() == parallel["test-other"].read_text()
    both = librispeech.prepare_librispeech(shared_data / "librispeech", tmp_path / "par", ["dev-clean", "test-other"])
    combined = combine_manifests(both.values(), tmp_path / "elsewhere" / "train.tsv")
    assert [u.utt_id for u in combined][:2] == list(DEV_CLEAN_UTTS) and len(combined) == 52
    assert len(read_manifest(tmp_path / "elsewhere" / "train.tsv", check_audio=True)) == 52, "paths re-rooted"
    with pytest.raises(DataPrepError, match="also in"):
        combine_manifests([both["dev-clean"], both["dev-clean"]], tmp_path / "dup.tsv")


def test_prepare_librispeech_reports_missing_audio_from_a_worker(shared_data: Path, tmp_path: Path) -> None:
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "2412" / "153948"
    chapter.mkdir(parents=True)
    source = shared_data / "librispeech" / "dev-clean" / "2412" / "153948"
    shutil.copy(source / "2412-153948.trans.txt", chapter)
    shutil.copy(source / f"{DEV_CLEAN_UTTS[0]}.flac", chapter)
    shutil.copytree(shared_data / "librispeech" / "test-other" / "1688", chapter.parent.parent / "1688")  # a good one
    with pytest.raises(DataPrepError, match=r"2412-153948.trans.txt: audio 2412-153948-0001.flac .* is missing"):
        librispeech.prepare_librispeech(tmp_path, tmp_path / "out", jobs=2)


def test_download_only_cli(server: ServerState, fake_librispeech_tar: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = fake_librispeech_tar.read_bytes()
    server.files["/12/dev-clean.tar.gz"] = data
    monkeypatch.setitem(librispeech.LIBRISPEECH_PARTS, "dev-clean", ("unused", _md5(data)))
    code = librispeech.main(["--download", str(tmp_path / "dl"), "--parts", "dev-clean",
                             "--mirror", f"{server.base_url}/12"])
    assert code == 0 and capsys.readouterr().out.strip() == str(tmp_path / "dl" / "LibriSpeech")
    assert (tmp_path / "dl" / "LibriSpeech" / "dev-clean" / "2412" / "153948" / f"{DEV_CLEAN_UTTS[1]}.flac").is_file()


def test_prepare_librispeech_missing_part(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(DataPrepError, match="train-clean-100 not found"):
        librispeech.prepare_librispeech(shared_data / "librispeech", tmp_path, parts=["train-clean-100"], jobs=1)


# -------------------------------------------------------------------------------------- the split


def test_speaker_split_is_disjoint_and_deterministic(shared_data: Path) -> None:
    utts = read_manifest(shared_data / "an4" / "manifest.tsv")
    train, dev = speaker_split(utts, 0.1, seed=3)
    train_spk, dev_spk = {u.speaker for u in train}, {u.speaker for u in dev}
    assert not train_spk & dev_spk
    assert len(dev_spk) == round(0.1 * 67) and len(train) + len(dev) == len(utts)
    assert {u.utt_id for u in train} | {u.utt_id for u in dev} == {u.utt_id for u in utts}
    assert speaker_split(utts, 0.1, seed=3) == (train, dev)
    shuffled = utts[:]
    random.Random(1).shuffle(shuffled)
    assert {u.speaker for u in speaker_split(shuffled, 0.1, seed=3)[1]} == dev_spk, "input order does not matter"
    assert {u.speaker for u in speaker_split(utts, 0.1, seed=4)[1]} != dev_spk


def test_speaker_split_limits(shared_data: Path) -> None:
    utts = read_manifest(shared_data / "fsdd" / "manifest.tsv")
    train, dev = speaker_split(utts, 0.0, min_dev_speakers=1)
    assert len({u.speaker for u in dev}) == 1 and len({u.speaker for u in train}) == 3
    with pytest.raises(DataPrepError, match="keep one for train"):
        speaker_split(utts, 0.9)
    with pytest.raises(DataPrepError, match="dev fraction"):
        speaker_split(utts, 1.0)


def test_split_cli(shared_data: Path, tmp_path: Path) -> None:
    args = ["--manifest", str(shared_data / "fsdd" / "manifest.tsv"), "--dev-fraction", "0.25", "--out-dir", str(tmp_path)]
    assert split.main(args) == 0
    train, dev = read_manifest(tmp_path / "train.tsv", check_audio=True), read_manifest(tmp_path / "dev.tsv", check_audio=True)
    assert (len(train), len(dev)) == (1500, 500)
    assert not {u.speaker for u in train} & {u.speaker for u in dev}


# ------------------------------------------------------------------------------------------- CLIs


@pytest.mark.parametrize("module", [an4, fsdd, librispeech, split, word_clips])
def test_cli_help(module: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert "--out" in capsys.readouterr().out


@pytest.mark.parametrize(
    "module, args",
    [
        (an4, ["--corpus", "/nonexistent/an4", "--out", "OUT"]),
        (an4, ["--out", "OUT"]),
        (fsdd, ["--corpus", "/nonexistent/fsdd", "--out", "OUT"]),
        (fsdd, ["--out", "OUT"]),
        (fsdd, ["--download", "--out", "OUT"]),
        (librispeech, ["--corpus", "/nonexistent/LibriSpeech", "--out", "OUT"]),
        (split, ["--manifest", "/nonexistent.tsv", "--dev-fraction", "0.1", "--out-dir", "OUT"]),
        (word_clips, ["--manifest", "/nonexistent.tsv", "--model", "/nonexistent.pt", "--out-dir", "OUT"]),
        (word_clips, ["--manifest", str(Path(__file__).parent / "data" / "an4_mblw.tsv"), "--model", "/nonexistent.pt",
                      "--out-dir", "OUT"]),
        (word_clips, ["--manifest", str(Path(__file__).parent / "data" / "an4_mblw.tsv"), "--model",
                      str(Path(__file__).parent / "data" / "an4_mblw.tsv"), "--out-dir", "OUT"]),  # not a model
    ],
)
def test_cli_errors_are_one_line(module: object, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path) if a == "OUT" else a for a in args]
    assert module.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_cli_as_module_exit_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.fsdd", "--corpus", str(tmp_path / "none"), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
