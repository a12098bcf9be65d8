"""banger: disposable Linux microVMs for developers and coding agents."""

__version__ = "0.1.0"
