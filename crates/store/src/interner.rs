//! Names kept once each and referred to by a small index, for reports that read the same few
//! thousand names (keys, models, teams) hundreds of thousands of times.

use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct Interner {
    names: Vec<Box<str>>,
    /// foldhash: SipHash of 64-character key hashes was most of a report's interning.
    index_of: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

impl Interner {
    pub(crate) fn index(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index_of.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.index_of.insert(name.into(), i);
        i
    }

    pub(crate) fn name(&self, index: u32) -> &str {
        self.names.get(index as usize).map_or("", |n| n)
    }

    /// Every name, by index.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Each index's place among the names in byte order.
    pub(crate) fn ranks(&self) -> Vec<u32> {
        let mut by_name: Vec<u32> = (0..self.names.len())
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        by_name.sort_unstable_by(|&a, &b| self.name(a).cmp(self.name(b)));
        let mut rank = vec![0; by_name.len()];
        for (place, &i) in by_name.iter().enumerate() {
            if let Some(r) = rank.get_mut(i as usize) {
                *r = u32::try_from(place).unwrap_or(u32::MAX);
            }
        }
        rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_kept_once_and_ranked_in_byte_order() {
        let mut names = Interner::default();
        let ids: Vec<u32> = ["b", "B", "a", "b", "", "é"]
            .iter()
            .map(|n| names.index(n))
            .collect();
        assert_eq!(ids, [0, 1, 2, 0, 3, 4]);
        assert_eq!(names.name(1), "B");
        assert_eq!(names.name(9), "");
        // "" < "B" < "a" < "b" < "é"
        assert_eq!(names.ranks(), [3, 1, 2, 0, 4]);
    }
}
