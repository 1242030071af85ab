from shop import calc_total


def receipt(prices):
    return f"Total: {calc_total(prices)}"
