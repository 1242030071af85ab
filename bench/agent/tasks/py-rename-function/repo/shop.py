def calc_total(prices):
    return round(sum(prices), 2)
