"""The SDK's version, sent as `context.library.version`."""

VERSION = "0.1.0"
