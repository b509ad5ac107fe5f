"""Which device a command line names: ``snapshot camera``, ``record 3f2c``,
``fake-device remove 'Door cam'``, ``fake-device add microphone``.

The kind words live here once (`KIND_WORDS`), for choosing a device and for
saying what kind of fake device to plug in.
"""

from __future__ import annotations

from collections.abc import Callable

from mediabroker.errors import CommandError
from mediastream import MediaDeviceInfo

__all__ = ["KIND_WORDS", "find_device", "kind_noun"]

KIND_WORDS = {  # what a user may type -> MediaDeviceInfo.kind
    "camera": "videoinput",
    "video": "videoinput",
    "videoinput": "videoinput",
    "microphone": "audioinput",
    "mic": "audioinput",
    "audio": "audioinput",
    "audioinput": "audioinput",
}
_NOUNS = {"videoinput": "camera", "audioinput": "microphone"}


def kind_noun(kind: str | None) -> str:
    """The noun for a `MediaDeviceInfo.kind`: camera, microphone, else device."""
    return _NOUNS.get(kind or "", "device")


def find_device(
    infos: list[MediaDeviceInfo], query: str, kind: str | None = None
) -> MediaDeviceInfo:
    """The one device ``query`` names: its deviceId or a unique prefix of it
    (4+ characters), its label or a unique part of it (any case), or a kind
    word ("camera", "microphone") for the first device of that kind.
    Raises `CommandError` (status 2) listing the candidates when none or
    several fit."""
    candidates = [i for i in infos if kind is None or i.kind == kind]
    lowered = query.lower()
    rules: list[Callable[[MediaDeviceInfo], bool]] = [
        lambda i: i.deviceId == query,
        lambda i: i.label.lower() == lowered,
        lambda i: len(query) >= 4 and i.deviceId.startswith(query),
        lambda i: lowered in i.label.lower(),
    ]
    for rule in rules:
        found = [i for i in candidates if rule(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CommandError(f"{query!r} names {len(found)} devices: {_listing(found)}", 2)
    word_kind = KIND_WORDS.get(lowered)
    if word_kind is not None and kind in (None, word_kind):
        of_kind = [i for i in candidates if i.kind == word_kind]
        if of_kind:
            return of_kind[0]
    raise CommandError(
        f"no {kind_noun(kind)} matches {query!r}; there are: {_listing(candidates)}", 2
    )


def _listing(infos: list[MediaDeviceInfo]) -> str:
    return ", ".join(f"{i.label!r} ({i.deviceId[:8]})" for i in infos) or "none"
