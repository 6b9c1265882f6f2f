"""Every error a user can cause, in one tree, with the exit code each one maps to.

    ReengageError                 exit 1   base: something the user can fix
    ├── ConfigError               exit 2   a bad setting in env or reengage.toml
    ├── HomeError                 exit 2   no home where one was expected (run `reengage init`)
    ├── InputError                exit 2   an input that cannot be used at all: a missing file,
    │                                      an unknown format, a required column absent;
    │                                      nothing is written
    └── StoreError                exit 1   the state or facts store refused an operation

An import that keeps its good rows but rejects some is not an error: it ends with exit code 3
(see `reengage.ingest.importer.ImportSummary.exit_code`).

Messages name where and what (file, line, field) and never carry personal data.
"""

from __future__ import annotations


class ReengageError(Exception):
    """Base of every error a user can cause; the CLI prints its message and exits."""

    exit_code = 1


class ConfigError(ReengageError):
    """A setting has a value reengage cannot use."""

    exit_code = 2


class HomeError(ReengageError):
    """The home folder is missing or was not made by `reengage init`."""

    exit_code = 2


class InputError(ReengageError):
    """An input file or argument cannot be used at all."""

    exit_code = 2


class StoreError(ReengageError):
    """The state or facts store refused an operation."""

    exit_code = 1


EXIT_OK = 0
EXIT_REJECTED_ROWS = 3
