const { addAll } = require("./math");

function report(numbers) {
  return `sum=${addAll(numbers)}`;
}

module.exports = { report };
