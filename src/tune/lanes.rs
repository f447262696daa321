//! Handing jobs to several lanes (one per GPU) as each becomes free.
//!
//! [`dispatch`] runs one thread per lane; the calling thread asks the [`Feed`] for a job
//! whenever a lane is idle and gives each result back to it in the order they finish, so
//! everything that writes (the CSV, the strategy's state) stays on one thread and a slow
//! candidate on one GPU never holds the others up. Nothing here knows about GPUs: the sweep
//! gives it worker processes, the tests give it fakes.

use anyhow::{anyhow, Result};
use std::collections::VecDeque;
use std::sync::mpsc::channel;

/// What a feed has for a lane that is free.
pub enum Next<J> {
    /// A job to run.
    Job(J),
    /// Nothing now; ask again once a job in flight has finished (a strategy waiting for
    /// results, a budget that the jobs in flight may use up). Treated as `End` when nothing
    /// is in flight.
    Wait,
    /// Hand out nothing more; the jobs in flight still finish and are given back.
    End,
}

/// The calling thread's side: where jobs come from and where results go.
pub trait Feed<J, R> {
    /// The next job; `in_flight` jobs are running on other lanes.
    fn next(&mut self, in_flight: usize) -> Result<Next<J>>;
    /// A job's result and the lane that ran it. An error stops handing out jobs; the jobs in
    /// flight finish (their results are dropped) and the error is returned.
    fn done(&mut self, lane: usize, result: R) -> Result<()>;
}

/// Runs the feed's jobs on `lanes` (each lane's state is used by one thread at a time)
/// until the feed ends, then returns once every job in flight is back.
pub fn dispatch<L, J, R>(
    lanes: &mut [L],
    run: &(dyn Fn(&mut L, J) -> R + Sync),
    feed: &mut dyn Feed<J, R>,
) -> Result<()>
where
    L: Send,
    J: Send,
    R: Send,
{
    if lanes.is_empty() {
        return Err(anyhow!("internal: no lane to run jobs on"));
    }
    let n = lanes.len();
    std::thread::scope(|scope| {
        let (results_tx, results) = channel::<(usize, R)>();
        let mut senders = Vec::with_capacity(n);
        for (i, lane) in lanes.iter_mut().enumerate() {
            let (tx, jobs) = channel::<J>();
            senders.push(tx);
            let results_tx = results_tx.clone();
            scope.spawn(move || {
                for job in jobs {
                    if results_tx.send((i, run(lane, job))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(results_tx);
        // Lowest lane first, so one job at a time always runs on lane 0.
        let mut idle: VecDeque<usize> = (0..n).collect();
        let (mut in_flight, mut ended, mut failed) = (0usize, false, None::<anyhow::Error>);
        loop {
            while !ended && failed.is_none() {
                let Some(&lane) = idle.front() else { break };
                match feed.next(in_flight) {
                    Ok(Next::Job(job)) => {
                        idle.pop_front();
                        if senders[lane].send(job).is_err() {
                            failed = Some(anyhow!("internal: lane {lane} stopped"));
                            break;
                        }
                        in_flight += 1;
                    }
                    Ok(Next::Wait) if in_flight > 0 => break,
                    Ok(Next::Wait | Next::End) => ended = true,
                    Err(e) => failed = Some(e),
                }
            }
            if in_flight == 0 {
                break;
            }
            let Ok((lane, r)) = results.recv() else {
                failed.get_or_insert_with(|| anyhow!("internal: a lane's thread ended with jobs in flight"));
                break;
            };
            in_flight -= 1;
            idle.push_back(lane);
            idle.make_contiguous().sort_unstable();
            if failed.is_none() {
                if let Err(e) = feed.done(lane, r) {
                    failed = Some(e);
                }
            }
        }
        drop(senders); // the lanes' threads end; the scope waits for them
        failed.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Jobs 0..n; each lane sleeps `cost(job)` ms. Records who ran what and the peak.
    struct Numbers {
        left: VecDeque<u64>,
        ran: BTreeMap<u64, usize>,
        peak: usize,
        stop_after: Option<usize>,
        fail_at: Option<u64>,
    }

    impl Numbers {
        fn new(n: u64) -> Numbers {
            Numbers { left: (0..n).collect(), ran: BTreeMap::new(), peak: 0, stop_after: None, fail_at: None }
        }
    }

    impl Feed<u64, u64> for Numbers {
        fn next(&mut self, in_flight: usize) -> Result<Next<u64>> {
            self.peak = self.peak.max(in_flight + 1);
            if self.stop_after.is_some_and(|n| self.ran.len() + in_flight >= n) {
                return Ok(Next::End);
            }
            Ok(self.left.pop_front().map_or(Next::End, Next::Job))
        }
        fn done(&mut self, lane: usize, job: u64) -> Result<()> {
            if self.fail_at == Some(job) {
                anyhow::bail!("writing job {job} failed");
            }
            assert!(self.ran.insert(job, lane).is_none(), "job {job} came back twice");
            Ok(())
        }
    }

    fn sleepy(cost: fn(u64) -> u64) -> impl Fn(&mut usize, u64) -> u64 + Sync {
        move |count: &mut usize, job: u64| {
            *count += 1;
            std::thread::sleep(Duration::from_millis(cost(job)));
            job
        }
    }

    #[test]
    fn every_job_runs_once_and_free_lanes_take_the_next() {
        let mut lanes = vec![0usize; 4];
        let mut feed = Numbers::new(40);
        // Job 0 is slow: the other lanes must take the rest meanwhile.
        dispatch(&mut lanes, &sleepy(|j| if j == 0 { 300 } else { 5 }), &mut feed).unwrap();
        assert_eq!(feed.ran.keys().copied().collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
        assert_eq!(lanes.iter().sum::<usize>(), 40);
        assert_eq!(feed.peak, 4);
        assert_eq!(lanes[feed.ran[&0]], 1, "the lane busy with the slow job ran nothing else");
    }

    #[test]
    fn one_lane_runs_jobs_in_order() {
        struct InOrder(Vec<u64>, u64);
        impl Feed<u64, u64> for InOrder {
            fn next(&mut self, in_flight: usize) -> Result<Next<u64>> {
                assert_eq!(in_flight, 0, "one lane: nothing is in flight when the next is asked");
                self.1 += 1;
                Ok(if self.1 <= 5 { Next::Job(self.1) } else { Next::End })
            }
            fn done(&mut self, lane: usize, r: u64) -> Result<()> {
                assert_eq!(lane, 0);
                self.0.push(r);
                Ok(())
            }
        }
        let mut feed = InOrder(vec![], 0);
        dispatch(&mut [0usize], &sleepy(|_| 0), &mut feed).unwrap();
        assert_eq!(feed.0, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn end_and_errors_stop_handing_out_but_jobs_in_flight_finish() {
        let mut lanes = vec![0usize; 3];
        let mut feed = Numbers { stop_after: Some(7), ..Numbers::new(100) };
        dispatch(&mut lanes, &sleepy(|_| 2), &mut feed).unwrap();
        assert_eq!(feed.ran.len(), 7);

        let mut lanes = vec![0usize; 3];
        let mut feed = Numbers { fail_at: Some(4), ..Numbers::new(100) };
        let err = dispatch(&mut lanes, &sleepy(|_| 2), &mut feed).unwrap_err();
        assert!(err.to_string().contains("job 4"), "{err}");
        assert!(lanes.iter().sum::<usize>() < 100, "no job is handed out after the error");
    }

    #[test]
    fn wait_asks_again_after_a_result_and_ends_when_nothing_is_in_flight() {
        // Hands out 2 jobs, then waits until both are back, twice; then waits with nothing
        // in flight, which ends.
        struct Rounds(usize, usize);
        impl Feed<u64, u64> for Rounds {
            fn next(&mut self, in_flight: usize) -> Result<Next<u64>> {
                if in_flight == 0 && self.0 == 2 * self.1 && self.1 < 2 {
                    self.1 += 1;
                }
                Ok(if self.0 < 2 * self.1 {
                    self.0 += 1;
                    Next::Job(self.0 as u64)
                } else {
                    Next::Wait
                })
            }
            fn done(&mut self, _: usize, _: u64) -> Result<()> {
                Ok(())
            }
        }
        let mut lanes = vec![0usize; 4];
        let mut feed = Rounds(0, 0);
        dispatch(&mut lanes, &sleepy(|_| 1), &mut feed).unwrap();
        assert_eq!((feed.0, lanes.iter().sum::<usize>()), (4, 4));
    }
}
