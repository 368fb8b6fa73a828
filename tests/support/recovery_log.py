"""What each fault cost: one line per fault, printed at the end of the test session."""

RESULTS: list[str] = []
