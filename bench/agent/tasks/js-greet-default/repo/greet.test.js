const test = require("node:test");
const assert = require("node:assert");
const { greet } = require("./greet");

test("greet", () => {
  assert.strictEqual(greet("Ada"), "Hello, Ada!");
  assert.strictEqual(greet(), "Hello, world!");
});
