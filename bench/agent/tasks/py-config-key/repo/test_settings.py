import unittest

from settings import retries


class SettingsTest(unittest.TestCase):
    def test_retries(self):
        self.assertEqual(retries(), 5)


if __name__ == "__main__":
    unittest.main()
