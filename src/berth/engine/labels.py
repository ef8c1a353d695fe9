"""Docker's label filters, shared by every list the engine filters."""


def label_matches(wanted, labels):
    """label=key or label=key=value, all must match."""
    labels = labels or {}
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True
