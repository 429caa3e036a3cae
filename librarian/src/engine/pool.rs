//! The book pool in memory: every book's id, group and state, and an index of free books per
//! interleave group, so that allocation never scans the pool.
//!
//! The original fetched every candidate free book from SQLite (up to 999,999 rows) and shuffled them
//! for each allocation, so its cost grew with the pool. Here each group keeps a bitmap of its free
//! books (at most 8,192 bits per group), and every policy is built from three primitives whose cost is
//! bounded by the number of groups and the bitmap size, never by the pool size:
//! take the lowest free books of a group, take the highest, or take uniformly random free books from
//! a set of groups.

use rand::Rng;

/// Index of a book in the pool (books are kept in ascending id order).
pub type BookIdx = u32;

pub struct Group {
    /// The `intlv_group` column value (mode-tagged).
    pub intlv_group: i64,
    /// Member books in ascending id order.
    pub members: Vec<BookIdx>,
    free_bits: Vec<u64>,
    pub free: u32,
}

impl Group {
    fn set_free(&mut self, pos: u32, free: bool) {
        let (w, b) = ((pos / 64) as usize, pos % 64);
        let was = self.free_bits[w] >> b & 1 == 1;
        if was == free {
            return;
        }
        if free {
            self.free_bits[w] |= 1 << b;
            self.free += 1;
        } else {
            self.free_bits[w] &= !(1 << b);
            self.free -= 1;
        }
    }

    fn lowest_free(&self) -> Option<u32> {
        self.free_bits
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i as u32 * 64 + w.trailing_zeros())
    }

    fn highest_free(&self) -> Option<u32> {
        self.free_bits
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i as u32 * 64 + 63 - w.leading_zeros())
    }

    /// Position of the `rank`-th free book (0-based) in this group.
    fn nth_free(&self, mut rank: u32) -> Option<u32> {
        for (i, w) in self.free_bits.iter().enumerate() {
            let n = w.count_ones();
            if rank < n {
                let mut w = *w;
                for _ in 0..rank {
                    w &= w - 1;
                }
                return Some(i as u32 * 64 + w.trailing_zeros());
            }
            rank -= n;
        }
        None
    }
}

/// One row of the `books` table.
#[derive(Clone, Copy, Debug)]
pub struct Book {
    pub id: i64,
    pub book_num: u32,
    pos: u32,
    group: u16,
    state: u8,
}

impl Book {
    /// The `books.allocated` value.
    pub fn state(&self) -> i64 {
        self.state as i64
    }
}

pub struct BookPool {
    books: Vec<Book>,
    pub groups: Vec<Group>,
    /// Books with `allocated > 0` (INUSE, ZOMBIE, OFFLINE), as `get_fs_stats` reports.
    pub used: i64,
    /// Books in state ZOMBIE, so that looking for orphan zombies costs nothing when there are none.
    pub zombies: i64,
}

impl BookPool {
    /// Builds the pool from `(id, intlv_group, book_num, allocated)` rows in ascending id order,
    /// streamed so that loading a large pool does not hold a second copy of it.
    pub fn new(rows: impl IntoIterator<Item = (i64, i64, i64, i64)>) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        let mut books = Vec::new();
        let mut used = 0;
        let mut zombies = 0;
        for (idx, (id, ig, num, state)) in rows.into_iter().enumerate() {
            let g = match groups.iter().rposition(|g| g.intlv_group == ig) {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        intlv_group: ig,
                        members: vec![],
                        free_bits: vec![],
                        free: 0,
                    });
                    groups.len() - 1
                }
            };
            let group = &mut groups[g];
            let pos = group.members.len() as u32;
            group.members.push(idx as BookIdx);
            if pos as usize / 64 >= group.free_bits.len() {
                group.free_bits.push(0);
            }
            if state == lfs_db::book_state::FREE {
                group.set_free(pos, true);
            } else {
                used += 1;
            }
            if state == lfs_db::book_state::ZOMBIE {
                zombies += 1;
            }
            books.push(Book {
                id,
                book_num: num as u32,
                state: state as u8,
                group: g as u16,
                pos,
            });
        }
        BookPool {
            books,
            groups,
            used,
            zombies,
        }
    }

    pub fn len(&self) -> usize {
        self.books.len()
    }

    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }

    pub fn book(&self, idx: BookIdx) -> &Book {
        &self.books[idx as usize]
    }

    pub fn intlv_group(&self, idx: BookIdx) -> i64 {
        self.groups[self.books[idx as usize].group as usize].intlv_group
    }

    pub fn group_of(&self, idx: BookIdx) -> usize {
        self.books[idx as usize].group as usize
    }

    pub fn all(&self) -> impl Iterator<Item = (BookIdx, &Book)> {
        self.books
            .iter()
            .enumerate()
            .map(|(i, b)| (i as BookIdx, b))
    }

    /// Finds a book by its id (LZA or physical address).
    pub fn find(&self, id: i64) -> Option<BookIdx> {
        self.books
            .binary_search_by_key(&id, |b| b.id)
            .ok()
            .map(|i| i as BookIdx)
    }

    pub fn group_index(&self, intlv_group: i64) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.intlv_group == intlv_group)
    }

    pub fn free_total(&self) -> i64 {
        self.books.len() as i64 - self.used
    }

    /// Records a state change (the caller writes it to SQLite).
    pub fn set_state(&mut self, idx: BookIdx, state: i64) {
        let b = &mut self.books[idx as usize];
        let old = b.state as i64;
        let zombie = lfs_db::book_state::ZOMBIE;
        self.zombies += (state == zombie) as i64 - (old == zombie) as i64;
        let was_free = old == lfs_db::book_state::FREE;
        let is_free = state == lfs_db::book_state::FREE;
        b.state = state as u8;
        let (g, pos) = (b.group as usize, b.pos);
        if was_free != is_free {
            self.groups[g].set_free(pos, is_free);
            self.used += if is_free { -1 } else { 1 };
        }
    }

    /// Reserves a free book so that later picks skip it; undone with [`BookPool::unreserve`].
    fn reserve(&mut self, idx: BookIdx) {
        let b = self.books[idx as usize];
        self.groups[b.group as usize].set_free(b.pos, false);
    }

    /// Gives back books picked by the `take_*` functions but not allocated after all.
    pub fn unreserve(&mut self, picked: &[BookIdx]) {
        for &idx in picked {
            let b = self.books[idx as usize];
            if b.state as i64 == lfs_db::book_state::FREE {
                self.groups[b.group as usize].set_free(b.pos, true);
            }
        }
    }

    /// Takes up to `n` free books of group `g`, lowest ids first (or highest first).
    pub fn take_ordered(&mut self, g: usize, n: usize, descending: bool, out: &mut Vec<BookIdx>) {
        while out.len() < n {
            let group = &self.groups[g];
            let pos = if descending {
                group.highest_free()
            } else {
                group.lowest_free()
            };
            let Some(pos) = pos else { break };
            let idx = group.members[pos as usize];
            self.reserve(idx);
            out.push(idx);
        }
    }

    /// Takes up to `n` free books chosen uniformly at random from the union of `groups`.
    pub fn take_random(
        &mut self,
        groups: &[usize],
        n: usize,
        rng: &mut impl Rng,
        out: &mut Vec<BookIdx>,
    ) {
        while out.len() < n {
            let total: u64 = groups.iter().map(|&g| self.groups[g].free as u64).sum();
            if total == 0 {
                break;
            }
            let mut r = rng.gen_range(0..total);
            let g = *groups
                .iter()
                .find(|&&g| {
                    let f = self.groups[g].free as u64;
                    if r < f {
                        true
                    } else {
                        r -= f;
                        false
                    }
                })
                .expect("rank falls inside the total");
            let pos = self.groups[g]
                .nth_free(r as u32)
                .expect("rank within group's free count");
            let idx = self.groups[g].members[pos as usize];
            self.reserve(idx);
            out.push(idx);
        }
    }

    /// Takes up to `n` free books across `groups` in ascending (or descending) id order overall.
    pub fn take_ordered_across(
        &mut self,
        groups: &[usize],
        n: usize,
        descending: bool,
        out: &mut Vec<BookIdx>,
    ) {
        while out.len() < n {
            let best = groups
                .iter()
                .filter_map(|&g| {
                    let group = &self.groups[g];
                    let pos = if descending {
                        group.highest_free()
                    } else {
                        group.lowest_free()
                    }?;
                    Some(group.members[pos as usize])
                })
                .reduce(|a, b| if (a < b) != descending { a } else { b });
            let Some(idx) = best else { break };
            self.reserve(idx);
            out.push(idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn pool(groups: i64, per: i64) -> BookPool {
        let mut rows = vec![];
        for g in 0..groups {
            for k in 0..per {
                rows.push(((g << 46) | (k << 33), g, k, 0));
            }
        }
        BookPool::new(rows)
    }

    #[test]
    fn ordered_takes_lowest_and_highest() {
        let mut p = pool(2, 100);
        let mut out = vec![];
        p.take_ordered(1, 3, false, &mut out);
        let nums: Vec<i64> = out.iter().map(|&i| p.book(i).book_num as i64).collect();
        assert_eq!(nums, [0, 1, 2]);
        out.clear();
        p.take_ordered(1, 2, true, &mut out);
        let nums: Vec<i64> = out.iter().map(|&i| p.book(i).book_num as i64).collect();
        assert_eq!(nums, [99, 98]);
    }

    #[test]
    fn random_never_picks_twice_and_stops_when_empty() {
        let mut p = pool(3, 70);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut out = vec![];
        p.take_random(&[0, 1, 2], 1000, &mut rng, &mut out);
        assert_eq!(out.len(), 210);
        let mut sorted = out.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 210);
        p.unreserve(&out);
        assert_eq!(p.groups.iter().map(|g| g.free).sum::<u32>(), 210);
    }

    #[test]
    fn state_changes_keep_counts() {
        let mut p = pool(1, 10);
        p.set_state(3, lfs_db::book_state::INUSE);
        assert_eq!((p.used, p.groups[0].free), (1, 9));
        p.set_state(3, lfs_db::book_state::ZOMBIE);
        assert_eq!((p.used, p.groups[0].free), (1, 9));
        p.set_state(3, lfs_db::book_state::FREE);
        assert_eq!((p.used, p.groups[0].free), (0, 10));
        assert_eq!(p.find(3 << 33), Some(3));
    }

    #[test]
    fn ordered_across_groups_is_global_id_order() {
        let mut p = pool(3, 4);
        let mut out = vec![];
        p.take_ordered_across(&[2, 0, 1], 6, false, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, 5]);
        out.clear();
        p.take_ordered_across(&[0, 1, 2], 2, true, &mut out);
        assert_eq!(out, [11, 10]);
    }
}
