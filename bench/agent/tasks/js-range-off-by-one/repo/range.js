function range(n) {
  const out = [];
  for (let i = 0; i < n - 1; i++) {
    out.push(i);
  }
  return out;
}

module.exports = { range };
