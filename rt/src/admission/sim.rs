//! The reference simulator: a discrete-event simulation of one core, against which the
//! analysis is checked.
//!
//! It runs jobs under EDF or fixed priority, preemptively or not, in integer time, and
//! records every job's response time and every deadline miss. Jobs are not dropped when
//! late: a late job keeps running and delays the rest, as on a real core.
//!
//! Arrivals are periodic from each task's offset, or for sporadic tasks at least a
//! period apart (the extra gaps drawn from a seeded generator); a task with a burst has
//! that many jobs arrive at each arrival. Each job is released
//! after its arrival by a jitter drawn in `[0, J]` (also seeded; zero, `J` and values in
//! between are all drawn). With zero offsets, zero jitter and periodic tasks this is
//! synchronous periodic release, whose schedule over one hyperperiod holds every
//! response time the analysis bounds.
//!
//! Ties: under EDF the earlier absolute deadline runs first, then the lower task index;
//! under fixed priority the higher priority (smaller rank), then the lower task index.
//! A job released at the instant another completes is considered before the next
//! dispatch. Jobs of one task run in arrival order.

/// One simulated task, in the simulator's integer time unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimTask {
    /// Period, or minimum inter-arrival time. > 0.
    pub period: u64,
    /// Execution time of every job. > 0.
    pub cost: u64,
    /// Relative deadline.
    pub deadline: u64,
    /// First arrival.
    pub offset: u64,
    /// Largest release jitter.
    pub jitter: u64,
    /// Sporadic (random gaps ≥ period) rather than periodic.
    pub sporadic: bool,
    /// Jobs per arrival (≥ 1): a sporadic task's whole burst arrives at once, the worst
    /// case of "at most `burst` in any window of `period`".
    pub burst: u32,
    /// Fixed priority rank, smaller is higher (ignored under EDF).
    pub rank: u32,
}

/// The scheduling policy simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimPolicy {
    /// Earliest deadline first.
    Edf,
    /// Fixed priority by [`SimTask::rank`].
    FixedPriority,
}

/// What to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The policy.
    pub policy: SimPolicy,
    /// Whether a released job preempts a running one of lower priority.
    pub preemptive: bool,
    /// Jobs arriving before this time are simulated, each until it completes.
    pub horizon: u64,
    /// Seed for sporadic gaps and jitter.
    pub seed: u64,
}

/// A job that finished after its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimMiss {
    /// The task's index.
    pub task: usize,
    /// The job's arrival.
    pub arrival: u64,
    /// Its absolute deadline.
    pub deadline: u64,
    /// When it finished.
    pub finish: u64,
}

/// The result of a simulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOutcome {
    /// Per task, the largest response time (finish − arrival) of any job; 0 if none ran.
    pub worst_response: Vec<u64>,
    /// Per task, how many jobs missed their deadline.
    pub misses: Vec<u64>,
    /// The earliest-finishing miss.
    pub first_miss: Option<SimMiss>,
    /// How many jobs ran.
    pub jobs: u64,
}

impl SimOutcome {
    /// Whether no job missed its deadline.
    pub fn all_met(&self) -> bool {
        self.first_miss.is_none()
    }
}

/// The least common multiple of the periods, if it fits in `u64`.
pub fn hyperperiod(periods: impl IntoIterator<Item = u64>) -> Option<u64> {
    periods.into_iter().try_fold(1u64, |acc, p| {
        if p == 0 {
            return None;
        }
        let g = gcd(acc, p);
        (acc / g).checked_mul(p)
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// SplitMix64: a tiny, well-distributed generator, so runs are repeatable from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[0, max]`, with the extremes drawn often (they provoke worst cases).
    fn up_to(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        match self.next() % 4 {
            0 => 0,
            1 => max,
            _ => self.next() % (max + 1),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Job {
    task: usize,
    arrival: u64,
    release: u64,
    deadline: u64,
    remaining: u64,
}

/// Simulates `tasks` on one core.
pub fn simulate(tasks: &[SimTask], config: &SimConfig) -> SimOutcome {
    let mut rng = SplitMix(config.seed);
    let mut jobs: Vec<Job> = Vec::new();
    for (task, t) in tasks.iter().enumerate() {
        let mut arrival = t.offset;
        while arrival < config.horizon {
            for _ in 0..t.burst.max(1) {
                jobs.push(Job {
                    task,
                    arrival,
                    release: arrival + rng.up_to(t.jitter),
                    deadline: arrival + t.deadline,
                    remaining: t.cost,
                });
            }
            let gap = if t.sporadic {
                t.period + rng.up_to(t.period / 2)
            } else {
                t.period
            };
            arrival += gap.max(1);
        }
    }
    jobs.sort_by_key(|j| (j.release, j.task, j.arrival));

    let n = tasks.len();
    let mut out = SimOutcome {
        worst_response: vec![0; n],
        misses: vec![0; n],
        first_miss: None,
        jobs: jobs.len() as u64,
    };
    let better = |a: &Job, b: &Job| -> bool {
        let key = |j: &Job| match config.policy {
            SimPolicy::Edf => (j.deadline, j.task as u64, j.arrival),
            SimPolicy::FixedPriority => (u64::from(tasks[j.task].rank), j.task as u64, j.arrival),
        };
        key(a) < key(b)
    };
    let mut ready: Vec<Job> = Vec::new();
    let mut next = 0;
    let mut now = 0u64;
    loop {
        while next < jobs.len() && jobs[next].release <= now {
            ready.push(jobs[next]);
            next += 1;
        }
        if ready.is_empty() {
            match jobs.get(next) {
                Some(j) => {
                    now = j.release;
                    continue;
                }
                None => break,
            }
        }
        let mut pick = 0;
        for i in 1..ready.len() {
            if better(&ready[i], &ready[pick]) {
                pick = i;
            }
        }
        let finish = now + ready[pick].remaining;
        let until = match (config.preemptive, jobs.get(next)) {
            (true, Some(j)) => finish.min(j.release),
            _ => finish,
        };
        ready[pick].remaining -= until - now;
        now = until;
        if ready[pick].remaining == 0 {
            let job = ready.swap_remove(pick);
            let response = now - job.arrival;
            let worst = &mut out.worst_response[job.task];
            *worst = (*worst).max(response);
            if now > job.deadline {
                out.misses[job.task] += 1;
                if out.first_miss.is_none() {
                    out.first_miss = Some(SimMiss {
                        task: job.task,
                        arrival: job.arrival,
                        deadline: job.deadline,
                        finish: now,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(cost: u64, period: u64, deadline: u64, rank: u32) -> SimTask {
        SimTask {
            period,
            cost,
            deadline,
            offset: 0,
            jitter: 0,
            sporadic: false,
            burst: 1,
            rank,
        }
    }

    fn run(tasks: &[SimTask], policy: SimPolicy, preemptive: bool) -> SimOutcome {
        let h = hyperperiod(tasks.iter().map(|t| t.period)).unwrap();
        simulate(
            tasks,
            &SimConfig {
                policy,
                preemptive,
                horizon: h,
                seed: 1,
            },
        )
    }

    #[test]
    fn reproduces_the_rate_monotonic_example_by_hand() {
        // (3, 7), (3, 12), (5, 20) under RM: worst responses 3, 6, 20.
        let set = [task(3, 7, 7, 1), task(3, 12, 12, 2), task(5, 20, 20, 3)];
        let out = run(&set, SimPolicy::FixedPriority, true);
        assert_eq!(out.worst_response, vec![3, 6, 20]);
        assert!(out.all_met());
        assert_eq!(out.jobs, 60 + 35 + 21);
    }

    #[test]
    fn preemption_matters() {
        // Preemptive: the (1, 4) jobs cut into the long job, which ends at 8. Without
        // preemption the long job runs 1..7 and the second short job waits until 7.
        let set = [task(1, 4, 4, 1), task(6, 12, 12, 2)];
        let pre = run(&set, SimPolicy::FixedPriority, true);
        assert!(pre.all_met());
        assert_eq!(pre.worst_response, vec![1, 8]);
        let np = run(&set, SimPolicy::FixedPriority, false);
        assert!(np.all_met());
        assert_eq!(np.worst_response, vec![4, 7]);
    }

    #[test]
    fn edf_meets_what_fixed_priority_misses() {
        // (2, 5), (4, 7): U = 0.971. RM misses the second task's first deadline
        // (2 + 4 + 2 = 8 > 7); EDF meets every deadline.
        let set = [task(2, 5, 5, 1), task(4, 7, 7, 2)];
        let fp = run(&set, SimPolicy::FixedPriority, true);
        assert!(fp.misses[1] > 0);
        let edf = run(&set, SimPolicy::Edf, true);
        assert!(edf.all_met(), "{edf:?}");
    }

    #[test]
    fn late_jobs_keep_running() {
        let set = [task(3, 4, 4, 1), task(3, 4, 4, 2)];
        let out = run(&set, SimPolicy::FixedPriority, true);
        assert!(out.misses[1] > 0);
        let first = out.first_miss.unwrap();
        assert_eq!((first.task, first.arrival, first.finish), (1, 0, 6));
    }

    #[test]
    fn sporadic_gaps_and_jitter_are_seeded() {
        let mut t = task(1, 10, 10, 1);
        t.sporadic = true;
        t.jitter = 3;
        let config = SimConfig {
            policy: SimPolicy::Edf,
            preemptive: true,
            horizon: 1000,
            seed: 7,
        };
        let a = simulate(&[t], &config);
        let b = simulate(&[t], &config);
        assert_eq!(a, b);
        assert!(a.jobs < 100 && a.jobs > 60, "{}", a.jobs);
        assert!(
            (1..=4).contains(&a.worst_response[0]),
            "{:?}",
            a.worst_response
        );
    }

    #[test]
    fn hyperperiods() {
        assert_eq!(hyperperiod([4, 6, 10]), Some(60));
        assert_eq!(hyperperiod([u64::MAX, u64::MAX - 1]), None);
        assert_eq!(hyperperiod([0]), None);
    }
}
