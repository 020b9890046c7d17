"""Test-session settings shared by every test module."""

import os

# The CLI keeps compiled programs on disk between runs; tests call its main() in-process and
# must neither depend on nor fill a user's cache.
os.environ["SCHEDOPT_CACHE_DIR"] = "off"
