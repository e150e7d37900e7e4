"""The opt-in live AWS suite (``make integration``); see docs/live-aws.md."""
