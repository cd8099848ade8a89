"""Wire this repository's tests to the refconv pytest plugin (the same one users get).

When refconv is installed, the plugin arrives through its pytest11 entry point; registering it again
here would be an error, so it is named only when running from a plain checkout. The plugin registers
the hypothesis profiles ci / dev / deep; tox selects ci through HYPOTHESIS_PROFILE.
"""

from refconv.conformance.plugin import installed

pytest_plugins = [] if installed() else ["refconv.conformance.plugin"]
