import unittest

from counting import count_up


class CountTest(unittest.TestCase):
    def test_count(self):
        self.assertEqual(count_up(3), [1, 2, 3])
        self.assertEqual(count_up(0), [])


if __name__ == "__main__":
    unittest.main()
