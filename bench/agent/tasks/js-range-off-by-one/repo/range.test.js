const test = require("node:test");
const assert = require("node:assert");
const { range } = require("./range");

test("range", () => {
  assert.deepStrictEqual(range(3), [0, 1, 2]);
  assert.deepStrictEqual(range(0), []);
});
