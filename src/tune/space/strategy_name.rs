//! The names of the search strategies, as a sweep file, the command line and a replay
//! write them. A leaf, kept with the sweep file's parser: the strategies themselves are in
//! `tune::search`, which builds a searcher from a name.

use anyhow::{bail, Result};

/// The strategies a sweep or a replay can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SearchStrategy {
    Grid,
    Random,
    Tpe,
    /// Tpe after the winners of other shapes of the same kernel (`warm`): see `warm.rs`.
    /// Without such winners it is tpe, proposal for proposal.
    Warm,
    Evolve,
}

impl SearchStrategy {
    pub const ALL: [SearchStrategy; 5] = [
        SearchStrategy::Warm,
        SearchStrategy::Tpe,
        SearchStrategy::Evolve,
        SearchStrategy::Random,
        SearchStrategy::Grid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SearchStrategy::Grid => "grid",
            SearchStrategy::Random => "random",
            SearchStrategy::Tpe => "tpe",
            SearchStrategy::Warm => "tpe+warm",
            SearchStrategy::Evolve => "evolve",
        }
    }

    /// Whether the strategy starts from the winners of other shapes when it is given some.
    pub fn uses_priors(self) -> bool {
        self == SearchStrategy::Warm
    }

    pub fn parse(s: &str) -> Result<SearchStrategy> {
        Ok(match s {
            "grid" | "exhaustive" => SearchStrategy::Grid,
            "random" => SearchStrategy::Random,
            "tpe" | "bo" => SearchStrategy::Tpe,
            "warm" | "tpe+warm" => SearchStrategy::Warm,
            "evolve" | "local" => SearchStrategy::Evolve,
            other => bail!("unknown search strategy {other:?}: expected grid, random, tpe, warm or evolve"),
        })
    }
}
