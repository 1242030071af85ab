const test = require("node:test");
const assert = require("node:assert");
const { sum } = require("./math");
const { report } = require("./report");

test("sum", () => {
  assert.strictEqual(sum([1, 2, 3]), 6);
  assert.strictEqual(report([2, 2]), "sum=4");
});
