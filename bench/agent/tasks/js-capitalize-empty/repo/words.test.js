const test = require("node:test");
const assert = require("node:assert");
const { capitalize } = require("./words");

test("capitalize", () => {
  assert.strictEqual(capitalize("node"), "Node");
  assert.strictEqual(capitalize(""), "");
});
