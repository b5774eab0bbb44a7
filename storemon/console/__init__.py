"""The operator's console: a Textual app running the storemon service in-process."""
