//! A chart on the page: a PNG file beside the HTML, linked by a relative path (the page
//! stays a few kilobytes however many charts it shows), with a caption.

use super::escape::escape;
use super::links::{file_name, href};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Figure {
    pub path: PathBuf,
    pub alt: String,
    /// Extra caption text (what a chart's marks mean), escaped on output.
    pub note: Option<String>,
}

impl Figure {
    pub fn new(path: PathBuf, alt: String) -> Figure {
        Figure { path, alt, note: None }
    }

    /// `<figure>` with a lazily loaded image, so a long page opens at once.
    pub fn tag(&self, html_dir: &Path) -> String {
        let src = escape(&href(&self.path, html_dir));
        let note = self.note.as_ref().map(|n| format!("<br>{}", escape(n))).unwrap_or_default();
        format!(
            "<figure><a href=\"{src}\"><img src=\"{src}\" alt=\"{alt}\" loading=\"lazy\"></a>\
             <figcaption>{alt} · <a href=\"{src}\">{file}</a>{note}</figcaption></figure>\n",
            alt = escape(&self.alt),
            file = escape(&file_name(&self.path)),
        )
    }
}
