//! What a strategy needs to know about a space, and a space given as a plain list.

use crate::tune::space::Candidate;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, HashSet};

/// One tunable of a variant and the values it may take, ascending and distinct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dim {
    pub name: String,
    pub values: Vec<i64>,
}

impl Dim {
    /// Position of `v` in the value list.
    pub fn index_of(&self, v: i64) -> Option<usize> {
        self.values.binary_search(&v).ok()
    }
}

/// A space of candidates as a strategy sees it.
///
/// `variants` and `dims` give the box the candidates live in; `is_valid` decides each point
/// (constraints, or presence in a recording). A space that can list its valid points
/// cheaply returns them from `list`, which lets strategies sample and enumerate exactly;
/// one that cannot is sampled by rejection and enumerated by walking the box.
pub trait SearchSpace {
    fn variants(&self) -> &[String];
    /// The variant's tunables, in a fixed order; empty for an unknown variant.
    fn dims(&self, variant: &str) -> &[Dim];
    fn is_valid(&self, c: &Candidate) -> bool;
    /// Number of valid candidates, when known.
    fn size(&self) -> Option<usize> {
        self.list().map(|l| l.len())
    }
    /// Every valid candidate, when the space can list them without cost.
    fn list(&self) -> Option<&[Candidate]> {
        None
    }
    /// One valid candidate drawn at random (uniformly over the list when there is one;
    /// otherwise a uniform variant, then uniform values, retried until valid). `None` when
    /// `tries` draws found nothing valid.
    fn sample(&self, rng: &mut StdRng, tries: usize) -> Option<Candidate> {
        if let Some(l) = self.list() {
            return (!l.is_empty()).then(|| l[rng.random_range(0..l.len())].clone());
        }
        let variants = self.variants();
        if variants.is_empty() {
            return None;
        }
        for _ in 0..tries {
            let v = &variants[rng.random_range(0..variants.len())];
            let params = self
                .dims(v)
                .iter()
                .filter(|d| !d.values.is_empty())
                .map(|d| (d.name.clone(), d.values[rng.random_range(0..d.values.len())]))
                .collect();
            let c = Candidate { variant: v.clone(), params };
            if self.is_valid(&c) {
                return Some(c);
            }
        }
        None
    }
}

/// The valid candidates of `space` that differ from `c` in one parameter by up to `reach`
/// positions of its value list, nearest first (then in parameter order).
pub fn neighbours(space: &dyn SearchSpace, c: &Candidate, reach: usize) -> Vec<Candidate> {
    let dims = space.dims(&c.variant);
    let mut out = Vec::new();
    for step in 1..=reach {
        for d in dims {
            let Some(i) = c.params.get(&d.name).and_then(|v| d.index_of(*v)) else { continue };
            for j in [i.checked_sub(step), Some(i + step)].into_iter().flatten() {
                if let Some(&v) = d.values.get(j) {
                    let mut n = c.clone();
                    n.params.insert(d.name.clone(), v);
                    if space.is_valid(&n) {
                        out.push(n);
                    }
                }
            }
        }
    }
    out
}

/// The valid candidates that differ from `c` in exactly two parameters, each by one
/// position: constraints that tie parameters together (tile = warps × warp tile) often
/// leave no valid single-parameter move.
pub fn pair_neighbours(space: &dyn SearchSpace, c: &Candidate) -> Vec<Candidate> {
    let dims = space.dims(&c.variant);
    let moves: Vec<(usize, i64)> = dims
        .iter()
        .enumerate()
        .flat_map(|(k, d)| {
            let i = c.params.get(&d.name).and_then(|v| d.index_of(*v));
            let mut m = Vec::new();
            if let Some(i) = i {
                if i > 0 {
                    m.push((k, d.values[i - 1]));
                }
                if let Some(&v) = d.values.get(i + 1) {
                    m.push((k, v));
                }
            }
            m
        })
        .collect();
    let mut out = Vec::new();
    for (a, &(ka, va)) in moves.iter().enumerate() {
        for &(kb, vb) in &moves[a + 1..] {
            if ka == kb {
                continue;
            }
            let mut n = c.clone();
            n.params.insert(dims[ka].name.clone(), va);
            n.params.insert(dims[kb].name.clone(), vb);
            if space.is_valid(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// A space given by its valid candidates (a recorded sweep, or a small enumerated one).
/// The box is what the list spans: each variant's parameters and their distinct values.
#[derive(Debug, Clone)]
pub struct ListSpace {
    candidates: Vec<Candidate>,
    members: HashSet<Candidate>,
    variants: Vec<String>,
    dims: BTreeMap<String, Vec<Dim>>,
}

impl ListSpace {
    /// Repeated candidates are kept once, in first-seen order.
    pub fn new(candidates: Vec<Candidate>) -> ListSpace {
        let mut members = HashSet::new();
        let mut kept = Vec::new();
        let mut variants: Vec<String> = Vec::new();
        let mut values: BTreeMap<String, BTreeMap<String, Vec<i64>>> = BTreeMap::new();
        for c in candidates {
            if !members.insert(c.clone()) {
                continue;
            }
            if !variants.contains(&c.variant) {
                variants.push(c.variant.clone());
            }
            let per = values.entry(c.variant.clone()).or_default();
            for (k, v) in &c.params {
                per.entry(k.clone()).or_default().push(*v);
            }
            kept.push(c);
        }
        let dims = values
            .into_iter()
            .map(|(variant, params)| {
                let dims = params
                    .into_iter()
                    .map(|(name, mut vs)| {
                        vs.sort_unstable();
                        vs.dedup();
                        Dim { name, values: vs }
                    })
                    .collect();
                (variant, dims)
            })
            .collect();
        ListSpace { candidates: kept, members, variants, dims }
    }
}

impl SearchSpace for ListSpace {
    fn variants(&self) -> &[String] {
        &self.variants
    }
    fn dims(&self, variant: &str) -> &[Dim] {
        self.dims.get(variant).map(|d| d.as_slice()).unwrap_or(&[])
    }
    fn is_valid(&self, c: &Candidate) -> bool {
        self.members.contains(c)
    }
    fn list(&self) -> Option<&[Candidate]> {
        Some(&self.candidates)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn cand(variant: &str, params: &[(&str, i64)]) -> Candidate {
        Candidate { variant: variant.into(), params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect() }
    }

    #[test]
    fn list_space_spans_its_candidates_and_finds_neighbours() {
        let s = ListSpace::new(vec![
            cand("a", &[("X", 1), ("Y", 8)]),
            cand("a", &[("X", 2), ("Y", 8)]),
            cand("a", &[("X", 4), ("Y", 16)]),
            cand("a", &[("X", 2), ("Y", 16)]),
            cand("a", &[("X", 1), ("Y", 8)]),
            cand("b", &[("Z", 3)]),
        ]);
        assert_eq!(s.size(), Some(5));
        assert_eq!(s.variants(), &["a".to_string(), "b".to_string()]);
        assert_eq!(s.dims("a")[0], Dim { name: "X".into(), values: vec![1, 2, 4] });
        assert!(s.dims("c").is_empty());
        let n = neighbours(&s, &cand("a", &[("X", 2), ("Y", 8)]), 1);
        assert_eq!(n, vec![cand("a", &[("X", 1), ("Y", 8)]), cand("a", &[("X", 2), ("Y", 16)])]);
        let p = pair_neighbours(&s, &cand("a", &[("X", 2), ("Y", 8)]));
        assert_eq!(p, vec![cand("a", &[("X", 4), ("Y", 16)])]);
    }
}
