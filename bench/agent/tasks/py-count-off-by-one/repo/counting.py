def count_up(n):
    """The numbers 1, 2, ..., n."""
    return list(range(1, n))
