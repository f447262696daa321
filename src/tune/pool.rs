//! The runner's side of the worker process: spawn, request with a watchdog, restart.

use super::worker::{Request, Response};
use crate::gpu::device::DeviceProps;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a request ended.
pub enum Reply {
    Response(Response),
    /// The worker exited (a fault kills it on purpose); the text is its stderr tail.
    Died(String),
    /// No answer before the watchdog fired; the worker has been killed.
    TimedOut,
}

pub struct WorkerHandle {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    pub props: DeviceProps,
    /// The CUDA ordinal it was started on, the GPU's UUID (empty from an older worker) and
    /// how many GPUs the worker's driver sees (for `--gpus all`).
    pub ordinal: usize,
    pub uuid: String,
    pub visible: usize,
}

impl WorkerHandle {
    /// Starts `kernlab worker` on GPU `ordinal` and waits for it to report the device.
    pub fn spawn(ordinal: usize) -> Result<WorkerHandle> {
        let exe = std::env::current_exe().context("finding kernlab's own executable")?;
        let mut cmd = Command::new(exe);
        cmd.args(["worker", "--gpu", &ordinal.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: Ctrl-C reaches the runner, which stops cleanly, and not the
            // worker mid-candidate (which would look like a fault).
            .process_group(0);
        let mut child = cmd.spawn().context("starting the worker process")?;
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let se = stderr.clone();
        std::thread::spawn(move || {
            // Bytes, not `lines()`: a worker that prints invalid UTF-8 must not end collection.
            let mut reader = BufReader::new(stderr_pipe);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf);
                push_tail(&mut lock_tail(&se), line.trim_end_matches(['\n', '\r']));
                buf.clear();
            }
        });
        let mut h = WorkerHandle {
            child,
            stdin,
            lines: rx,
            stderr,
            props: placeholder_props(),
            ordinal,
            uuid: String::new(),
            visible: 0,
        };
        match h.wait(Duration::from_secs(180)) {
            Reply::Response(Response::Hello { props, uuid, visible }) => {
                (h.props, h.uuid, h.visible) = (props, uuid, visible);
                Ok(h)
            }
            Reply::Response(other) => bail!("worker said {other:?} instead of hello"),
            // The worker's own message already reads "error: …"; say it once.
            Reply::Died(err) => {
                bail!("the GPU worker could not start: {}", err.trim().trim_start_matches("error:").trim_start())
            }
            Reply::TimedOut => bail!("the GPU worker did not start within 180 s"),
        }
    }

    fn wait(&mut self, timeout: Duration) -> Reply {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => match serde_json::from_str::<Response>(&line) {
                Ok(r) => Reply::Response(r),
                Err(_) => Reply::Died(format!("worker wrote an unreadable line: {line}")),
            },
            Err(RecvTimeoutError::Disconnected) => {
                let _ = self.child.wait();
                // Give the stderr thread a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(50));
                Reply::Died(self.stderr_tail())
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Reply::TimedOut
            }
        }
    }

    pub fn stderr_tail(&self) -> String {
        let s = lock_tail(&self.stderr).clone();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(6)..].join("\n")
    }

    /// Sends a request and waits for its answer, at most `timeout`.
    pub fn request(&mut self, req: &Request, timeout: Duration) -> Reply {
        let line = serde_json::to_string(req).expect("requests serialize");
        if writeln!(self.stdin, "{line}").and_then(|_| self.stdin.flush()).is_err() {
            let _ = self.child.wait();
            return Reply::Died(self.stderr_tail());
        }
        self.wait(timeout)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Longest stderr text kept, and how much of its end is kept once it grows past that.
const TAIL_MAX: usize = 8192;
const TAIL_KEEP: usize = 4096;

/// The stderr tail, even if a thread panicked while holding it: the text is only ever
/// appended to or cut whole, so a poisoned lock still guards readable text.
fn lock_tail(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Appends one line, keeping about the last `TAIL_KEEP` bytes once the text passes
/// `TAIL_MAX`, cut at a character boundary (a byte cut may land inside a multi-byte one).
fn push_tail(s: &mut String, line: &str) {
    s.push_str(line);
    s.push('\n');
    if s.len() > TAIL_MAX {
        let mut cut = s.len() - TAIL_KEEP;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.drain(..cut);
    }
}

fn placeholder_props() -> DeviceProps {
    DeviceProps {
        name: String::new(),
        cc_major: 0,
        cc_minor: 0,
        sm_count: 0,
        total_mem_bytes: 0,
        l2_bytes: 0,
        max_smem_optin: 0,
        max_threads_per_block: 0,
        regs_per_block: 0,
        sm_clock_mhz: 0,
        mem_clock_mhz: 0,
        bus_width_bits: 0,
        driver_version: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_cut_at_a_character_boundary() {
        // Three-byte characters, so some cut points fall inside one.
        for pad in 0..3 {
            let mut s = String::new();
            for _ in 0..20 {
                push_tail(&mut s, &format!("{}{}", "a".repeat(pad), "€".repeat(300)));
            }
            assert!(s.len() <= TAIL_MAX && s.ends_with("€\n"), "{}", s.len());
        }
    }

    #[test]
    fn a_poisoned_tail_is_still_readable() {
        let m = Arc::new(Mutex::new(String::from("last words\n")));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("a stderr thread panics while holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        push_tail(&mut lock_tail(&m), "more");
        assert_eq!(*lock_tail(&m), "last words\nmore\n");
    }
}
