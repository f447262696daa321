//! Sections that modules above the report contribute for their own files in the reports
//! dir (the quality study's CSV, say). Those modules use the report's chart style, so the
//! report cannot name them; the command that builds the page hands their sources in.

use anyhow::Result;
use std::path::Path;

/// One kind of file the page shows, and how to render it.
#[derive(Clone, Copy)]
pub struct SectionSource {
    /// What the notes call a file of this kind when it cannot be read ("quality table").
    pub name: &'static str,
    /// Whether a file of the reports dir is one of this kind.
    pub claims: fn(&Path) -> bool,
    /// The HTML section for one claimed file (escaped, with its own heading), given the
    /// folder the page is written to (for relative links to files beside the claimed one).
    pub render: fn(&Path, &Path) -> Result<String>,
}

impl std::fmt::Debug for SectionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectionSource").field("name", &self.name).finish_non_exhaustive()
    }
}
