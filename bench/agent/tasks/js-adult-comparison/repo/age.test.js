const test = require("node:test");
const assert = require("node:assert");
const { isAdult } = require("./age");

test("isAdult", () => {
  assert.strictEqual(isAdult(18), true);
  assert.strictEqual(isAdult(17), false);
});
