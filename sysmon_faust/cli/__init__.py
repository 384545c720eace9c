"""The operator's commands: replay, topics/print/describe, rules test, the demo."""
