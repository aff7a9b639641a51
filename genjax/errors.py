"""User-facing errors.

Every error a user can cause by bad input (names, shapes, missing data, incompatible checkpoints,
non-finite losses) is a :class:`GenjaxError`. The command-line tools print its message as one
line and exit with status 2 (:func:`exit_with`); everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable


class GenjaxError(Exception):
  """Base class: the message is a single line that says what is wrong and how to fix it."""


class ConfigError(GenjaxError):
  """The configuration names something unknown or holds an impossible value."""


class DataError(GenjaxError):
  """A dataset is unknown, missing or malformed."""


class CheckpointError(GenjaxError):
  """A checkpoint is incompatible with the configured model, or unreadable."""


class KernelError(GenjaxError):
  """A native kernel library cannot be built or loaded on this machine."""


class NonFiniteError(GenjaxError):
  """A loss became NaN or Inf; training stopped with the last good checkpoint kept."""


class StepError(GenjaxError):
  """A compiled step failed at run time (a kernel's error, memory); training stopped with the
  last good checkpoint kept."""


def first_line(e: BaseException, limit: int = 160) -> str:
  """``"<exception type>: <first line of its message>"``, the line cut to ``limit`` characters."""
  line = (str(e).strip().splitlines() or [""])[0]
  line = line if len(line) <= limit else line[:limit] + "..."
  return f"{type(e).__name__}: {line}" if line else type(e).__name__


def exit_with(message: str, before_exit: Callable[[], Any] | None = None) -> None:
  """Prints ``genjax: error: <first line of message>`` to stderr and exits with status 2, after
  ``before_exit()`` where given (a multi-process run's :func:`genjax.parallel.leave_together`)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  print(f"genjax: error: {message.splitlines()[0] if message else ''}", file=sys.stderr,
        flush=True)
  # Exit at once: everything worth keeping is already closed, and a failed Orbax restore leaves
  # reads in flight whose late errors would otherwise print tracebacks after this line.
  logging.flush()
  if before_exit is not None:
    before_exit()
  os._exit(2)  # pylint: disable=protected-access


def report_json(fn: Callable[..., Any], *args, **kwargs) -> None:
  """A command-line tool's body: prints ``fn(*args, **kwargs)`` as one JSON line, or exits with
  :func:`exit_with` on a :class:`GenjaxError`."""
  try:
    result = fn(*args, **kwargs)
  except GenjaxError as e:
    exit_with(str(e))
  print(json.dumps(result), flush=True)


def make_folder(path: str | os.PathLike, what: str, error: type[GenjaxError] = ConfigError,
                fix: str = "") -> None:
  """``os.makedirs(path, exist_ok=True)``, a failure as one line: ``cannot make <what> <path>
  (<reason>)<fix>``."""
  if os.path.isfile(path):
    raise error(f"cannot make {what} {path} (it is a file){fix}")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise error(f"cannot make {what} {path} ({e.strerror}){fix}") from None


def check_choice(what: str, value: Any, valid, error: type[Exception] = ValueError, *,
                 listing: str = "valid") -> None:
  """Raises ``error("unknown <what> <value!r>; <listing>: a, b")`` unless ``value`` is in
  ``valid``."""
  if value not in valid:
    raise error(f"unknown {what} {value!r}; {listing}: {', '.join(valid)}")


def check_config_choice(key: str, value: Any, valid) -> None:
  """Raises :class:`ConfigError` ``"config.<key> must be one of a, b, got <value!r>"`` unless
  ``value`` is in ``valid``."""
  if value not in valid:
    raise ConfigError(f"config.{key} must be one of {', '.join(valid)}, got {value!r}")
