"""The exceptions that end a command with a given exit status, in one place (imports nothing).

main.py maps them: :class:`ConfigError` and :class:`DataError` -> one line on stderr, exit
status 2 (:data:`EXIT_REFUSED`); :class:`Collapsed` -> exit status 3 (:data:`EXIT_COLLAPSED`);
:class:`Preempted` -> exit status 0, the same command resumes.
"""

EXIT_REFUSED = 2
EXIT_COLLAPSED = 3


class ConfigError(ValueError):
  """A user-fixable configuration problem."""


class DataError(ValueError):
  """A data file or folder cannot be used; the message names it and says what to do."""


class Collapsed(Exception):
  """Raised with ``train.stop_on_collapse`` once the mask has collapsed and a checkpoint of
  that step is saved (exit status 3)."""


class Preempted(Exception):
  """Raised after SIGTERM once a checkpoint is saved: the run stops here (exit status 0) and
  the same command resumes it."""
