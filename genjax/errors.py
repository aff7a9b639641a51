"""User-facing errors.

Every error a user can cause by bad input (names, shapes, missing data, incompatible checkpoints,
non-finite losses) is a :class:`GenjaxError`. ``genjax.main`` prints its message as one line and
exits with status 2; everything else is a bug and keeps its traceback.
"""


class GenjaxError(Exception):
  """Base class: the message is a single line that says what is wrong and how to fix it."""


class ConfigError(GenjaxError):
  """The configuration names something unknown or holds an impossible value."""


class DataError(GenjaxError):
  """A dataset is unknown, missing or malformed."""


class CheckpointError(GenjaxError):
  """A checkpoint is incompatible with the configured model, or unreadable."""


class NonFiniteError(GenjaxError):
  """A loss became NaN or Inf; training stopped with the last good checkpoint kept."""
