//! The names of the search strategies, as a sweep file, the command line and a replay
//! write them. A leaf: the strategies themselves are in the sibling modules.

use anyhow::{bail, Result};

/// The strategies a sweep or a replay can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SearchStrategy {
    Grid,
    Random,
    Tpe,
    Evolve,
}

impl SearchStrategy {
    pub const ALL: [SearchStrategy; 4] =
        [SearchStrategy::Tpe, SearchStrategy::Evolve, SearchStrategy::Random, SearchStrategy::Grid];

    pub fn name(self) -> &'static str {
        match self {
            SearchStrategy::Grid => "grid",
            SearchStrategy::Random => "random",
            SearchStrategy::Tpe => "tpe",
            SearchStrategy::Evolve => "evolve",
        }
    }

    pub fn parse(s: &str) -> Result<SearchStrategy> {
        Ok(match s {
            "grid" | "exhaustive" => SearchStrategy::Grid,
            "random" => SearchStrategy::Random,
            "tpe" | "bo" => SearchStrategy::Tpe,
            "evolve" | "local" => SearchStrategy::Evolve,
            other => bail!("unknown search strategy {other:?}: expected grid, random, tpe or evolve"),
        })
    }
}
