"""``pytest conformance/suite`` loads the suite's plugin and fixtures from here."""

from conformance.fixtures import *  # noqa: F403
from conformance.plugin import *  # noqa: F403
