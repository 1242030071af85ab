import unittest

from geometry import area


class AreaTest(unittest.TestCase):
    def test_area(self):
        self.assertEqual(area(3, 4), 12)
        self.assertEqual(area(1, 1), 1)


if __name__ == "__main__":
    unittest.main()
