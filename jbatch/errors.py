"""The one exception type for bad user input.

The CLI prints its message as a single line and exits with status 2 before any
work starts; library code raises it wherever a user's choice is to blame.
"""


class UserError(ValueError):
  """A config, flag or data problem the user can fix; the message says how."""
