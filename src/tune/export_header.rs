//! The C/C++ header of `kernlab export`: one table row per measured (dtype, shape) with the
//! winning variant and tunables (−1 where a variant has no such tunable) and, for kernels
//! described in a sweep file, each launch's grid, block and shared memory at that shape;
//! the same values as `#define`s; and `<kernel>_pick(dtype, dims…)`, which returns the row
//! measured nearest to a shape by the distance kernlab's own lookups use (sum over the
//! dimensions of the squared difference of logarithms). Valid C99 and C++11.

use super::export::Exported;

/// A C identifier made of `s` (letters, digits and `_`; other characters become `_`).
pub fn ident(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn c_string(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_ascii_graphic() || c == ' ' => vec![c],
            _ => vec!['?'],
        })
        .collect();
    format!("\"{escaped}\"")
}

pub fn header(x: &Exported) -> String {
    let k = ident(&x.kernel);
    let up = k.to_ascii_uppercase();
    let n = x.entries.len();
    let mut o = String::new();
    o.push_str(&format!(
        "// {k}.h — tuned configurations of {} exported by `kernlab export {}`.\n\
         // GPU {} (cc {}), NVRTC {}. Generated: do not edit; export again after a new sweep.\n\
         // Each row is the winner measured at one (dtype, shape); {k}_pick() returns the row\n\
         // nearest to a shape. Tunables a variant does not have are -1. The launch geometry of\n\
         // a row is the one measured at that row's shape: for another shape, compute the grid\n\
         // from the row's tunables as your launch code does.\n",
        x.kernel,
        x.kernel,
        x.gpu.replace('\n', " "),
        x.cc,
        x.nvrtc
    ));
    o.push_str(&format!(
        "#ifndef KL_EXPORT_{up}_H\n#define KL_EXPORT_{up}_H\n#include <math.h>\n#include <string.h>\n\n"
    ));
    o.push_str(&format!("#define {up}_NUM_CONFIGS {n}\n#define {up}_NUM_DIMS {}\n", x.dims.len()));
    let launches = x.launches_per_run;
    if launches > 0 {
        o.push_str(&format!("#define {up}_NUM_LAUNCHES {launches}\n"));
    }
    o.push('\n');
    for e in &x.entries {
        let shape: Vec<String> = e.shape.iter().map(|v| v.to_string()).collect();
        let p = format!("{up}_{}_{}", ident(&e.dtype).to_ascii_uppercase(), shape.join("X"));
        o.push_str(&format!("#define {p}_VARIANT {}\n", c_string(&e.variant)));
        for (name, v) in &e.params {
            o.push_str(&format!("#define {p}_{} {v}\n", ident(name)));
        }
    }
    o.push('\n');
    if launches > 0 {
        o.push_str(&format!("typedef struct {{ unsigned grid[3]; unsigned block[3]; unsigned smem; }} {k}_launch;\n"));
    }
    o.push_str("typedef struct {\n    const char* dtype;\n    const char* variant;\n");
    o.push_str(&format!("    long long shape[{}]; /* {} */\n", x.dims.len().max(1), x.dims.join(", ")));
    for p in &x.params {
        o.push_str(&format!("    long long {};\n", ident(p)));
    }
    o.push_str("    double time_us;\n");
    if launches > 0 {
        o.push_str(&format!("    {k}_launch launch[{launches}];\n"));
    }
    o.push_str(&format!("}} {k}_config;\n\n"));
    o.push_str(&format!("static const {k}_config {k}_configs[{}] = {{\n", n.max(1)));
    for e in &x.entries {
        let shape: Vec<String> = e.shape.iter().map(|v| v.to_string()).collect();
        let params: Vec<String> = x.params.iter().map(|p| e.params.get(p).copied().unwrap_or(-1).to_string()).collect();
        let mut row = format!("    {{{}, {}, {{{}}}, ", c_string(&e.dtype), c_string(&e.variant), shape.join(", "));
        for p in &params {
            row.push_str(&format!("{p}, "));
        }
        row.push_str(&format!("{:.3}", e.time_us));
        if let Some(ls) = &e.launches {
            let ls: Vec<String> = ls
                .iter()
                .map(|l| {
                    format!(
                        "{{{{{}, {}, {}}}, {{{}, {}, {}}}, {}}}",
                        l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2], l.smem
                    )
                })
                .collect();
            row.push_str(&format!(", {{{}}}", ls.join(", ")));
        }
        o.push_str(&format!("{row}}},\n"));
    }
    o.push_str("};\n\n");
    let args: Vec<String> = x.dims.iter().map(|d| format!("long long {}", ident(d))).collect();
    o.push_str(&format!(
        "/* The row for `dtype` (\"bf16\", \"fp16\", \"fp32\") measured nearest to this shape; NULL if none. */\n\
         static inline const {k}_config* {k}_pick(const char* dtype, {}) {{\n",
        args.join(", ")
    ));
    let dims: Vec<String> = x.dims.iter().map(|d| ident(d)).collect();
    o.push_str(&format!("    const long long want[{}] = {{{}}};\n", dims.len().max(1), dims.join(", ")));
    o.push_str(&format!(
        "    const {k}_config* best = 0;\n    double best_d = 0.0;\n    int i, j;\n\
         \x20   for (i = 0; i < {up}_NUM_CONFIGS; i++) {{\n\
         \x20       double d = 0.0;\n\
         \x20       if (strcmp({k}_configs[i].dtype, dtype) != 0) continue;\n\
         \x20       for (j = 0; j < {up}_NUM_DIMS; j++) {{\n\
         \x20           double a = log((double)(want[j] > 1 ? want[j] : 1));\n\
         \x20           double b = log((double)({k}_configs[i].shape[j] > 1 ? {k}_configs[i].shape[j] : 1));\n\
         \x20           d += (a - b) * (a - b);\n\
         \x20       }}\n\
         \x20       if (!best || d < best_d) {{ best = &{k}_configs[i]; best_d = d; }}\n\
         \x20   }}\n    return best;\n}}\n\n#endif\n"
    ));
    o
}
