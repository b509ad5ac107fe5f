"""Camera URLs: accepted or refused with a reason, and never shown with their secrets."""

from __future__ import annotations

import pytest

from mediabroker.urls import check_video_url, redact_text, redact_url, url_label, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter22@cam.local:554/live", "rtsp://admin:***@cam.local:554/live"),
        ("rtsp://token1234@cam/live", "rtsp://***@cam/live"),
        ("http://cam/v.mjpg?user=me&password=hunter22", "http://cam/v.mjpg?user=me&password=***"),
        ("https://cam/x.m3u8?api_key=hunter22&x=1", "https://cam/x.m3u8?api_key=***&x=1"),
        ("http://cam/v.mjpg?pwd=&q", "http://cam/v.mjpg?pwd=&q"),
        ("rtsp://cam/live", "rtsp://cam/live"),
        ("rtsp://a:b@[::1]:8554/live#frag", "rtsp://a:***@[::1]:8554/live"),
    ],
)
def test_redact_url_hides_passwords_and_secret_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_never_raises() -> None:
    assert redact_url("http://[::1") == "***"


def test_redact_text_scrubs_urls_and_known_secrets() -> None:
    line = "[tcp @ 0x1] Connection to rtsp://admin:hunter22@cam:554/live failed; hunter22"
    secrets = url_secrets("rtsp://admin:hunter22@cam:554/live")
    assert redact_text(line, secrets) == (
        "[tcp @ 0x1] Connection to rtsp://admin:***@cam:554/live failed; ***"
    )


def test_url_secrets_include_the_percent_encoded_form() -> None:
    assert set(url_secrets("rtsp://u:p%40ss99@h/?token=t0k3n")) >= {"p%40ss99", "t0k3n"}


def test_a_label_names_host_port_and_path_only() -> None:
    assert url_label("rtsp://admin:hunter22@cam.local:8554/live/") == "cam.local:8554/live (rtsp)"
    assert url_label("http://cam/v.mjpg?password=x") == "cam/v.mjpg (http)"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/dev/video0", "the scheme must be one of"),
        ("ftp://admin:hunter22@cam/x", "the scheme must be one of"),
        ("rtsp:///live", "names no host"),
        ("rtsp://cam:70000/live", "not a valid URL"),
        ("rtsp://cam/li ve", "white space"),
    ],
)
def test_a_url_ffmpeg_cannot_read_is_refused_without_its_password(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        check_video_url(url)
    assert "hunter22" not in str(caught.value)


def test_network_urls_are_accepted_unchanged() -> None:
    for url in ("rtsp://a:b@cam/live", "http://cam/v.mjpg", "https://cam/x.m3u8", "rtsps://c/x"):
        assert check_video_url(url) == url
