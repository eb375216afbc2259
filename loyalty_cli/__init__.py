"""loyalty: declarative loyalty programs for online shops.

The core is usable without the CLI::

    from loyalty_cli import validate_paths
    report = validate_paths(["program.yaml"])
"""

__version__ = "0.1.0"


def validate_paths(paths):  # pragma: no cover - thin re-export
    """Validate program and workflow files; returns a ValidationReport."""
    from loyalty_cli.config.validate import validate_paths as _validate

    return _validate(paths)
