//! The two strategies that learn nothing: grid (every valid candidate in a fixed order) and
//! random (a seeded sample without replacement).

use super::space::SearchSpace;
use super::Searcher;
use crate::tune::space::Candidate;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use std::collections::HashSet;

/// Draws before a space without a list is taken to have no unseen valid point left.
pub const REJECTION_TRIES: usize = 20_000;

/// A uniformly drawn candidate not in `seen`: from the list when the space keeps one, else by
/// rejection sampling (None once REJECTION_TRIES draws found only seen or invalid points).
/// The random start of the model-based and evolutionary strategies.
pub fn random_unseen(space: &dyn SearchSpace, seen: &HashSet<Candidate>, rng: &mut StdRng) -> Option<Candidate> {
    if let Some(list) = space.list() {
        let unseen: Vec<&Candidate> = list.iter().filter(|c| !seen.contains(*c)).collect();
        return unseen.choose(rng).map(|c| (*c).clone());
    }
    for _ in 0..REJECTION_TRIES {
        let c = space.sample(rng, REJECTION_TRIES)?;
        if !seen.contains(&c) {
            return Some(c);
        }
    }
    None
}

/// Every valid candidate: the list's order when the space has one, else the box walked
/// variant by variant with the last parameter moving fastest.
pub struct GridSearch<'a> {
    space: &'a dyn SearchSpace,
    /// Position in the list, or the variant being walked.
    next: usize,
    /// Value positions of the box walk within the current variant.
    digits: Vec<usize>,
    done: bool,
}

impl<'a> GridSearch<'a> {
    pub fn new(space: &'a dyn SearchSpace) -> GridSearch<'a> {
        GridSearch { space, next: 0, digits: Vec::new(), done: false }
    }

    /// The next point of the box walk, valid or not; `None` at the end.
    fn step_box(&mut self) -> Option<Candidate> {
        let variants = self.space.variants();
        loop {
            let v = variants.get(self.next)?;
            let dims = self.space.dims(v);
            if self.done {
                self.next += 1;
                self.digits.clear();
                self.done = false;
                continue;
            }
            if self.digits.len() != dims.len() {
                self.digits = vec![0; dims.len()];
            }
            if dims.iter().any(|d| d.values.is_empty()) {
                self.done = true;
                continue;
            }
            let c = Candidate {
                variant: v.clone(),
                params: dims.iter().zip(&self.digits).map(|(d, &i)| (d.name.clone(), d.values[i])).collect(),
            };
            // Advance the mixed-radix counter; carrying out of the first digit ends the variant.
            self.done = true;
            for k in (0..dims.len()).rev() {
                self.digits[k] += 1;
                if self.digits[k] < dims[k].values.len() {
                    self.done = false;
                    break;
                }
                self.digits[k] = 0;
            }
            return Some(c);
        }
    }
}

impl Searcher for GridSearch<'_> {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        let mut out = Vec::with_capacity(n);
        if let Some(list) = self.space.list() {
            let end = (self.next + n).min(list.len());
            out.extend_from_slice(&list[self.next.min(end)..end]);
            self.next = end;
            return out;
        }
        while out.len() < n {
            match self.step_box() {
                Some(c) if self.space.is_valid(&c) => out.push(c),
                Some(_) => {}
                None => break,
            }
        }
        out
    }
    fn tell(&mut self, _: &Candidate, _: Option<f64>) {}
}

/// A seeded sample without replacement: a shuffle of the list when the space has one,
/// else rejection draws that skip what was already proposed.
pub struct RandomSearch<'a> {
    space: &'a dyn SearchSpace,
    rng: StdRng,
    order: Option<Vec<usize>>,
    next: usize,
    seen: HashSet<Candidate>,
}

impl<'a> RandomSearch<'a> {
    pub fn new(space: &'a dyn SearchSpace, seed: u64) -> RandomSearch<'a> {
        let mut rng = StdRng::seed_from_u64(seed);
        let order = space.list().map(|l| {
            let mut idx: Vec<usize> = (0..l.len()).collect();
            idx.shuffle(&mut rng);
            idx
        });
        RandomSearch { space, rng, order, next: 0, seen: HashSet::new() }
    }
}

impl Searcher for RandomSearch<'_> {
    fn ask(&mut self, n: usize) -> Vec<Candidate> {
        if let (Some(order), Some(list)) = (&self.order, self.space.list()) {
            let end = (self.next + n).min(order.len());
            let out = order[self.next.min(end)..end].iter().map(|&i| list[i].clone()).collect();
            self.next = end;
            return out;
        }
        let mut out = Vec::with_capacity(n);
        let mut misses = 0;
        while out.len() < n && misses < REJECTION_TRIES {
            match self.space.sample(&mut self.rng, REJECTION_TRIES) {
                Some(c) if self.seen.insert(c.clone()) => out.push(c),
                Some(_) => misses += 1,
                None => break,
            }
        }
        out
    }
    fn tell(&mut self, _: &Candidate, _: Option<f64>) {}
}
