"""A failed execution's stored traceback, cut down to the user's own frames.

An error stored by a workflow keeps its traceback as a note (``serde.dumps_error``), because a
traceback object cannot be stored. That text runs through taskloom's replay and retry machinery and
asyncio before it reaches the user's code; the CLI shows the frames a user can act on and says how
many it left out.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

#: how ``serde.dumps_error`` starts the note that carries the traceback text
NOTE_HEADING = "(original traceback)"
_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line \d+')
_HIDDEN_ROOTS = tuple(
    str(Path(root).resolve()) for root in (Path(__file__).resolve().parents[1], sysconfig.get_paths()["stdlib"])
)


def stored_traceback(error: BaseException) -> str | None:
    """The traceback text stored with ``error``, or None when it carries none."""
    for note in getattr(error, "__notes__", None) or ():
        text = str(note)
        if text.startswith(NOTE_HEADING):
            return text[len(NOTE_HEADING) :].lstrip("\n")
    return None


def user_traceback(error: BaseException) -> str | None:
    """The stored traceback with taskloom's and the standard library's frames left out."""
    text = stored_traceback(error)
    if text is None:
        return None
    kept: list[str] = []
    hidden = 0
    keeping = True
    for line in text.splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            keeping = not _is_hidden(frame.group("path"))
            if not keeping:
                hidden += 1
                continue
            if hidden:
                kept.append(f"  [{hidden} frame{'s' if hidden > 1 else ''} of taskloom and Python hidden]")
                hidden = 0
        elif line.startswith("    ") and not keeping:
            continue  # the source and caret lines of a hidden frame
        else:
            keeping = True
            if hidden:
                kept.append(f"  [{hidden} frame{'s' if hidden > 1 else ''} of taskloom and Python hidden]")
                hidden = 0
        kept.append(line)
    return "\n".join(kept)


def _is_hidden(path: str) -> bool:
    if path.startswith("<"):  # <string>, <frozen ...>: nothing to open
        return path.startswith("<frozen")
    resolved = str(Path(path).resolve())
    return any(resolved == root or resolved.startswith(root + "/") for root in _HIDDEN_ROOTS)
