"""The URL guard and yt-dlp download of the YouTube app (no model needed: fast), and the
guarded download facing hostile sites: endless, trickling and slow bodies, redirects and HLS
playlists pointing at private addresses, DNS rebinding."""

import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import internal_and_hostile_sites, serve_folder
from whisper_gl import download, shutdown
from whisper_gl.config import MediaLimits
from whisper_gl.download import ALLOW_PRIVATE_ENV, COOKIES_ENV, DownloadError, check_url, downloaded_audio

MB = 1_000_000
LIMITS = MediaLimits(max_seconds=60, max_bytes=MB)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    str(folder / "tone.mp3")], check=True)
    (folder / "page.html").write_text("<html><body>no media here</body></html>")
    return folder


@pytest.fixture(scope="module")
def media_server(media_dir):
    with serve_folder(media_dir) as url:
        yield url


@pytest.fixture
def no_network(monkeypatch):
    """Any name resolution fails the test: the URL must be refused before the network."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def private_allowed(monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")


# --- the guard --------------------------------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "only http"),
    ("ftp://example.com/a.mp3", "only http"),
    ("ytsearch:galician news", "only http"),
    ("", "paste a link"),
    ("https://www.youtube.com/playlist?list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf", "playlist"),
    ("https://music.youtube.com/playlist?list=OLAK5uy_abc", "playlist"),
    ("https://www.youtube.com/watch?list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf", "playlist"),
])
def test_refused_before_any_network_access(url, message, no_network):
    with pytest.raises(DownloadError, match=message):
        check_url(url)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "192.168.0.10", "172.16.5.4",
                                  "169.254.169.254", "100.64.0.1", "0.0.0.0", "[::ffff:127.0.0.1]", "[fe80::1]",
                                  "240.0.0.1"])
def test_private_and_local_hosts_are_refused(host, monkeypatch):
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    with pytest.raises(DownloadError, match="private or local addresses"):
        check_url(f"http://{host}/video.mp4")


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    # DNS can point a public-looking name at the metadata service.
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)),
    ])
    with pytest.raises(DownloadError, match="169.254.169.254"):
        check_url("http://innocent.example/a.mp3")


def test_public_hosts_and_single_videos_pass(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("142.250.184.238", 443))])
    url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf"
    assert check_url(f"  {url} ") == url  # a video inside a playlist is one video (noplaylist)


def test_unreachable_host_is_a_fast_clear_message():
    with pytest.raises(DownloadError, match="could not reach nonexistent.invalid"):
        check_url("http://nonexistent.invalid/a.mp3")


def resolver(known: set[str]):
    """getaddrinfo that answers for the names in `known` (a public address) and fails for the rest."""
    def resolve(host, port, *args, **kwargs):
        if host not in known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("142.250.184.238", port))]

    return resolve


def test_a_name_that_does_not_exist_is_the_links_fault(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolver(set(download.REFERENCE_HOSTS)))
    with pytest.raises(DownloadError, match=r"^could not reach www\.youtub\.com: no such host \(check the link\)$"):
        check_url("https://www.youtub.com/watch?v=dQw4w9WgXcQ")


@pytest.mark.parametrize("link", ["https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://www.youtub.com/watch?v=x"])
def test_a_server_without_network_says_so_not_check_the_link(link, monkeypatch):
    """Offline (no name resolves, as on a machine without DNS), a good link is not blamed."""
    monkeypatch.setattr(socket, "getaddrinfo", resolver(set()))
    with pytest.raises(DownloadError, match="this server cannot reach the internet") as refused:
        check_url(link)
    assert "check the link" not in str(refused.value) and "link may well be right" in str(refused.value)


def test_allow_flag_lifts_the_private_guard(private_allowed):
    assert check_url("http://127.0.0.1:9/a.mp3")


def test_allow_list_lifts_it_for_the_addresses_it_names(monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "127.0.0.1:9, 10.0.0.5")
    assert check_url("http://127.0.0.1:9/a.mp3") and check_url("http://10.0.0.5:8080/a.mp3")
    with pytest.raises(DownloadError, match="private or local addresses"):
        check_url("http://127.0.0.1:10/a.mp3")


# --- the download -----------------------------------------------------------------------

def test_downloads_audio_with_yt_dlp_and_removes_it(media_server, private_allowed):
    with downloaded_audio(f"{media_server}/tone.mp3", LIMITS) as audio:
        assert audio.is_file() and audio.stat().st_size > 10_000
        folder = audio.parent
        assert folder.name.startswith("whisper-gl-download-")
    assert not folder.exists()


def test_size_cap_stops_the_download(media_server, private_allowed):
    with pytest.raises(DownloadError, match="larger than"):
        with downloaded_audio(f"{media_server}/tone.mp3", MediaLimits(max_bytes=1000)):
            pass


@pytest.mark.parametrize("path, message", [("missing.mp3", "HTTP 404"), ("page.html", "no video or audio")])
def test_site_errors_become_one_line(path, message, media_server, private_allowed):
    with pytest.raises(DownloadError, match=message) as refused:
        with downloaded_audio(f"{media_server}/{path}", LIMITS):
            pass
    assert "\n" not in str(refused.value) and "ERROR" not in str(refused.value)


def test_metadata_caps_refuse_before_downloading():
    limits = MediaLimits(max_seconds=1800, max_bytes=MB)
    with pytest.raises(DownloadError, match="lasts 45 min; the limit is 30 min"):
        download._check_info({"duration": 2700}, limits)
    with pytest.raises(DownloadError, match="is 5 MB; the limit is 1 MB"):
        download._check_info({"filesize_approx": 5 * MB}, limits)
    with pytest.raises(DownloadError, match="several videos"):
        download._check_info({"_type": "playlist", "entries": []}, limits)
    with pytest.raises(DownloadError, match="live"):
        download._check_info({"is_live": True}, limits)


def test_youtube_bot_check_points_to_the_cookies_secret():
    # The message yt-dlp raises on datacenter IPs such as a Space's.
    error = ("ERROR: [youtube] dQw4w9WgXcQ: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser "
             "or --cookies for the authentication. See https://github.com/yt-dlp/yt-dlp/wiki/FAQ")
    message = download._explain(error, "https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    assert COOKIES_ENV in message and "README" in message


def test_cookies_secret_as_content_or_path(tmp_path, monkeypatch):
    content = "# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tSID\tsecret"
    monkeypatch.setenv(COOKIES_ENV, content)
    assert download._cookies_file(tmp_path).read_text().strip() == content

    saved = tmp_path / "saved.txt"
    saved.write_text(content)
    monkeypatch.setenv(COOKIES_ENV, str(saved))
    (tmp_path / "download").mkdir()
    copy = download._cookies_file(tmp_path / "download")
    assert copy != saved and copy.read_text() == content  # yt-dlp writes to a copy, never the secret

    monkeypatch.setenv(COOKIES_ENV, "/no/such/cookies.txt")
    with pytest.raises(DownloadError, match=COOKIES_ENV):
        download._cookies_file(tmp_path)


def test_yt_dlp_gets_the_deno_runtime():
    import os

    runtime = download._deno_config()
    assert os.access(runtime["path"], os.X_OK)


# --- hostile sites: every byte counted, every connection checked ------------------------------

@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """The system temporary folder, empty, for this test: what a download leaves is visible."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def sites(monkeypatch):
    """(hostile site, internal service, its hits): tests.support.internal_and_hostile_sites, with
    the hostile site's address the only private one allowed (it stands for a public host)."""
    with internal_and_hostile_sites() as (site, service, hits):
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, site.removeprefix("http://"))
        yield site, service, hits


@pytest.fixture
def hostile_site(sites):
    return sites[0]


def refused(url: str, limits: MediaLimits = LIMITS) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(DownloadError) as error:
        with downloaded_audio(url, limits):
            pytest.fail("the download was not refused")
    return str(error.value), time.monotonic() - started


def test_a_body_without_length_is_cut_at_the_size_cap(hostile_site, temp_root):
    message, seconds = refused(f"{hostile_site}/endless.mp3")
    assert message == "this media is more than 1 MB; the limit is 1 MB"
    assert seconds < 10 and list(temp_root.iterdir()) == []  # the partial file went with its folder


def test_a_trickling_server_is_dropped_after_the_grace_period(hostile_site, temp_root):
    limits = MediaLimits(max_bytes=MB, rate_grace_seconds=2, min_download_rate=8000)
    message, seconds = refused(f"{hostile_site}/trickle.mp3", limits)
    assert message == "the site sends too slowly (under 8 kB/s)"
    assert 2 <= seconds < 6 and list(temp_root.iterdir()) == []


def test_a_download_has_an_overall_deadline(hostile_site, temp_root):
    # The rate floor is set far below the site's 40 kB/s: only the deadline can stop it, even when a
    # busy machine delays the site's writes.
    limits = MediaLimits(max_bytes=100 * MB, download_seconds=3, rate_grace_seconds=1, min_download_rate=100)
    message, seconds = refused(f"{hostile_site}/steady.mp3", limits)
    assert message == "the download took longer than 3 s: the site is too slow"
    assert 3 <= seconds < 7 and list(temp_root.iterdir()) == []


def test_shutdown_stops_a_download_in_flight(hostile_site, temp_root):
    threading.Timer(1.0, shutdown.stopping.set).start()
    try:
        message, seconds = refused(f"{hostile_site}/steady.mp3")
    finally:
        shutdown.stopping.clear()
    assert "shutting down" in message and seconds < 4 and list(temp_root.iterdir()) == []


@pytest.mark.parametrize("link", ["/redirect.mp3", "/exists.m3u8", "/missing.m3u8"])
def test_redirects_and_playlists_never_reach_a_private_address(link, sites, temp_root):
    site, _, hits = sites
    message, seconds = refused(f"{site}{link}")
    # The same words whether the private URL exists or not: nothing to probe an internal network with.
    assert message == "links to private or local addresses are not allowed"
    assert hits == [] and seconds < 10 and list(temp_root.iterdir()) == []


def test_dns_rebinding_cannot_reach_a_private_address(sites, monkeypatch, temp_root):
    _, service, hits = sites
    port = int(service.rsplit(":", 1)[1])
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "127.0.0.1:9")  # any address but the internal service
    answers = iter(["93.184.215.14"])  # public for the check, then the internal service

    def resolve(host, *args, **kwargs):
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    message, _ = refused(f"http://rebind.example:{port}/secret.mp3")
    assert message == "links to private or local addresses are not allowed" and hits == []


def test_links_on_the_core_install_say_what_to_install():
    """yt-dlp is the youtube extra's: without it, a link gets one line naming the install."""
    from whisper_gl.paths import install_command

    run = subprocess.run([sys.executable, "-c", "import sys; sys.modules['yt_dlp'] = None\n"
                          "from whisper_gl import WhisperGLError\n"
                          "try:\n    import whisper_gl.download\nexcept WhisperGLError as error:\n    print(error)"],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == f"media links need the youtube extra: {install_command('youtube')}", run.stderr
