import unittest

from checkout import receipt
from shop import total_price


class ShopTest(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total_price([1.5, 2.25]), 3.75)

    def test_receipt(self):
        self.assertEqual(receipt([1, 2]), "Total: 3")


if __name__ == "__main__":
    unittest.main()
