//! `--gpus all|0,1,…`: which GPUs a sweep measures on, one worker process each.
//!
//! GPUs of one model are taken as interchangeable: their rows go to one CSV, their winners
//! to one tuned-database slot (the database keys winners by GPU name and compute
//! capability, so one model's winner never stands for another's). GPUs of different models
//! in one sweep would mix their timings into one winner, so the sweep refuses them and says
//! how to run one sweep per model instead.

use super::pool::WorkerHandle;
use super::shard::Shard;
use anyhow::{bail, Context, Result};

/// What `--gpus` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuChoice {
    /// Every GPU the driver sees (after CUDA_VISIBLE_DEVICES).
    All,
    /// These ordinals, in this order (the first one times the peer and settles winners).
    List(Vec<usize>),
}

impl GpuChoice {
    /// Parses `all` or a comma list of distinct ordinals.
    pub fn parse(text: &str) -> Result<GpuChoice> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(GpuChoice::All);
        }
        let mut out: Vec<usize> = Vec::new();
        for part in t.split(',') {
            let part = part.trim();
            let Ok(n) = part.parse::<usize>() else {
                bail!(
                    "--gpus {text:?}: {part:?} is not a GPU ordinal; give `all` or ordinals as \
                     `kernlab devices` lists them, e.g. --gpus 0,1"
                );
            };
            if out.contains(&n) {
                bail!("--gpus {text:?}: GPU {n} is listed twice; each GPU runs one worker");
            }
            out.push(n);
        }
        Ok(GpuChoice::List(out))
    }
}

/// clap's value parser for `--gpus`.
pub fn parse_arg(s: &str) -> std::result::Result<GpuChoice, String> {
    GpuChoice::parse(s).map_err(|e| e.to_string().trim_start_matches(&format!("--gpus {s:?}: ")).to_string())
}

/// How a sweep is spread: over the GPUs of this host and, with `--shard`, over hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// None: the one GPU of `--gpu` (the default, one worker).
    pub gpus: Option<GpuChoice>,
    pub shard: Option<Shard>,
}

impl Scale {
    /// One GPU, the whole space: a sweep as it always ran.
    pub fn single() -> Scale {
        Scale { gpus: None, shard: None }
    }
}

/// Starts one worker per chosen GPU (`default` when `--gpus` was not given) and checks
/// that they are one model. The first worker is the first GPU asked for.
pub fn start_workers(choice: Option<&GpuChoice>, default: usize) -> Result<Vec<WorkerHandle>> {
    let first_ordinal = match choice {
        None | Some(GpuChoice::All) => default,
        Some(GpuChoice::List(l)) => *l.first().context("--gpus: no GPU given")?,
    };
    let first = WorkerHandle::spawn(first_ordinal)?;
    let rest: Vec<usize> = match choice {
        None => vec![],
        Some(GpuChoice::All) => (0..first.visible.max(1)).filter(|&o| o != first_ordinal).collect(),
        Some(GpuChoice::List(l)) => l[1..].to_vec(),
    };
    // Each worker takes a few seconds to start (context, helper kernels): start them at once.
    let started: Vec<Result<WorkerHandle>> = std::thread::scope(|s| {
        let handles: Vec<_> = rest.iter().map(|&o| s.spawn(move || WorkerHandle::spawn(o))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("a worker's start thread panicked"))).collect()
    });
    let mut workers = vec![first];
    for (o, w) in rest.iter().zip(started) {
        workers.push(w.with_context(|| format!("starting the worker on GPU {o}"))?);
    }
    let models: Vec<(usize, String)> = workers.iter().map(|w| (w.ordinal, model_of(w))).collect();
    check_one_model(&models)?;
    Ok(workers)
}

/// A GPU model as the tuned database tells them apart: name and compute capability.
fn model_of(w: &WorkerHandle) -> String {
    format!("{} (cc {})", w.props.name, w.props.cc())
}

/// Refuses GPUs of different models, naming which ordinals are which and what to run.
pub fn check_one_model(gpus: &[(usize, String)]) -> Result<()> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (o, m) in gpus {
        match groups.iter_mut().find(|(name, _)| name == m) {
            Some((_, list)) => list.push(*o),
            None => groups.push((m.clone(), vec![*o])),
        }
    }
    if groups.len() <= 1 {
        return Ok(());
    }
    let list = |l: &[usize]| l.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(",");
    let which: Vec<String> = groups.iter().map(|(m, l)| format!("GPU {} = {m}", list(l))).collect();
    let runs: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, (_, l))| format!("`kernlab sweep … --gpus {} --out model{i}.csv`", list(l)))
        .collect();
    bail!(
        "the chosen GPUs are of different models ({}): their timings must not pick one winner. \
         Run one sweep per model, e.g. {} (the tuned database keeps each model's winners apart)",
        which.join("; "),
        runs.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_parse_all_and_lists_and_explain_bad_input() {
        assert_eq!(GpuChoice::parse("all").unwrap(), GpuChoice::All);
        assert_eq!(GpuChoice::parse(" ALL ").unwrap(), GpuChoice::All);
        assert_eq!(GpuChoice::parse("2").unwrap(), GpuChoice::List(vec![2]));
        assert_eq!(GpuChoice::parse("1, 0,3").unwrap(), GpuChoice::List(vec![1, 0, 3]));
        for (bad, says) in [
            ("", "not a GPU ordinal"),
            ("0,,1", "not a GPU ordinal"),
            ("-1", "not a GPU ordinal"),
            ("gpu0", "not a GPU ordinal"),
            ("0,1,0", "listed twice"),
            ("some", "not a GPU ordinal"),
        ] {
            let err = GpuChoice::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(parse_arg("0,0").unwrap_err().starts_with("GPU 0 is listed twice"));
    }

    #[test]
    fn different_models_are_refused_with_one_sweep_per_model() {
        let h200 = "NVIDIA H200 (cc 9.0)".to_string();
        let a100 = "NVIDIA A100-SXM4-80GB (cc 8.0)".to_string();
        assert!(check_one_model(&[(0, h200.clone()), (1, h200.clone())]).is_ok());
        assert!(check_one_model(&[]).is_ok());
        let err = check_one_model(&[(0, h200.clone()), (1, a100.clone()), (2, h200)]).unwrap_err().to_string();
        assert!(err.contains("GPU 0,2 = NVIDIA H200 (cc 9.0); GPU 1 = NVIDIA A100"), "{err}");
        assert!(err.contains("--gpus 0,2 --out model0.csv") && err.contains("--gpus 1 --out model1.csv"), "{err}");
    }
}
