//! The entry points a CUDA source declares (`extern "C" __global__ void name(params)`), read
//! from the text so that a missing entry point or an argument list that cannot match is an
//! error naming the sweep file's line before anything is compiled or launched.

/// One `__global__` function: its name and, per parameter, whether it is a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub pointers: Vec<bool>,
    /// The parameters as written (for messages).
    pub params: Vec<String>,
}

/// Every `__global__` function of `source` (comments removed first).
pub fn entries(source: &str) -> Vec<Entry> {
    let text = strip_comments(source);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("__global__") {
        rest = &rest[at + "__global__".len()..];
        if let Some(e) = one(rest) {
            out.push(e);
        }
    }
    out
}

/// Reads `void __launch_bounds__(..) name(params)` after `__global__`.
fn one(text: &str) -> Option<Entry> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut last_ident: Option<&str> = None;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            last_ident = Some(&text[start..i]);
            continue;
        }
        if c == b'(' {
            let close = matching(text, i)?;
            let ident = last_ident?;
            if ident == "__launch_bounds__" || ident == "__maxnreg__" {
                i = close + 1;
                last_ident = None;
                continue;
            }
            let params = split_params(&text[i + 1..close]);
            let pointers = params.iter().map(|p| p.contains('*') || p.contains('[')).collect();
            return Some(Entry { name: ident.to_string(), pointers, params });
        }
        if c == b';' || c == b'{' {
            return None;
        }
        i += 1;
    }
    None
}

fn matching(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + j);
                }
            }
            _ => {}
        }
    }
    None
}

/// Parameters split at top-level commas; `()` and `(void)` have none.
fn split_params(list: &str) -> Vec<String> {
    let t = list.trim();
    if t.is_empty() || t == "void" {
        return vec![];
    }
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (j, c) in t.char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(t[start..j].trim().to_string());
                start = j + 1;
            }
            _ => {}
        }
    }
    out.push(t[start..].trim().to_string());
    out
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '/' && it.peek() == Some(&'/') {
            for c in it.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '/' && it.peek() == Some(&'*') {
            it.next();
            let mut prev = ' ';
            for c in it.by_ref() {
                if prev == '*' && c == '/' {
                    break;
                }
                prev = c;
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_parameter_kinds() {
        let src = "// __global__ void commented(int)\n\
                   extern \"C\" __global__ void __launch_bounds__(256, 2) k1(const T* __restrict__ x, T* y, int n) {}\n\
                   /* __global__ void hidden(float*) */\n\
                   extern \"C\" __global__ void k2(void) {}\n\
                   template <int N> __device__ void notme(int);\n";
        let e = entries(src);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].name, "k1");
        assert_eq!(e[0].pointers, vec![true, true, false]);
        assert_eq!(e[1].name, "k2");
        assert!(e[1].pointers.is_empty());
    }
}
