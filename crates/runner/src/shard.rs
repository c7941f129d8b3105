//! Sweeps over many machines: `--shard I/N` trains the I-th of N slices of the grid, and a claim
//! file per run keeps two processes that share a results folder from training the same run.
//!
//! A run belongs to slice `fnv1a(run id) mod N`, so a slice depends on the run's id alone: a
//! shard that is started again does the same runs, whatever else changed in the grid. A process
//! claims a run by linking a complete `runs/<id>.claim` into place (a hard link is atomic and
//! fails when the name exists, also on NFS) before it trains it, and removes the claim after
//! the run's record is written; a run whose record exists is never trained again. A claim left
//! behind by a process that died is taken over by a process on the same host once that process
//! is gone, or by the next process of the same shard (a scheduler runs one process per shard at
//! a time); of several processes that find a claim stale at once, one takes it over (see
//! [`claim`]). A results folder must therefore be on a file system with hard links (ext4, XFS,
//! Btrfs, APFS, NTFS, NFS; not FAT): elsewhere the first claim fails, before any run trains,
//! with the file system's error and the folder's name.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The I-th of N slices of a grid (`0 <= I < N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// I, counted from 0 (`SLURM_ARRAY_TASK_ID`, `JOB_COMPLETION_INDEX`).
    pub index: usize,
    /// N.
    pub count: usize,
}

impl Shard {
    /// True when run `id` belongs to this slice.
    pub fn holds(&self, id: &str) -> bool {
        fnv1a(id.as_bytes()) % self.count as u64 == self.index as u64
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions and machines, unlike std's.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Self { index, count }),
            _ => Err(format!(
                "expected I/N with 0 <= I < N, e.g. 0/4 for the first of four shards, got {text:?}"
            )),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Who holds a claim: host, process and shard, written into the claim file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    host: String,
    pid: u32,
    /// `I/N`, or `all` for an unsharded sweep.
    shard: String,
}

impl Claimant {
    /// This process, working on `shard` (None: the whole grid).
    pub fn this_process(shard: Option<Shard>) -> Self {
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        Self {
            host: host.trim().to_string(),
            pid: std::process::id(),
            shard: shard.map_or_else(|| "all".into(), |s| s.to_string()),
        }
    }

    fn line(&self) -> String {
        format!("{} {} {}\n", self.host, self.pid, self.shard)
    }

    fn parse(line: &str) -> Option<Self> {
        let mut parts = line.split_whitespace();
        Some(Self {
            host: parts.next()?.to_string(),
            pid: parts.next()?.parse().ok()?,
            shard: parts.next()?.to_string(),
        })
    }

    /// Whether `holder`'s claim is left over from a process that is gone.
    fn outlived(&self, holder: &Self) -> bool {
        let same_host_and_gone =
            holder.host == self.host && holder.pid != self.pid && !process_alive(holder.pid);
        let same_shard_restarted =
            holder.shard == self.shard && holder.shard != "all" && holder != self;
        same_host_and_gone || same_shard_restarted
    }
}

/// Whether process `pid` of this host runs; where that cannot be known, it is taken to run.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// The claim file of run `id` in folder `runs`.
fn claim_file(runs: &Path, id: &str) -> PathBuf {
    runs.join(format!("{id}.claim"))
}

/// Claims run `id` for `claimant`: true if this process may train it now, false if another
/// process holds it.
///
/// The claim is written whole into a draft of this process's own and then hard-linked to its
/// name: the link is atomic and fails when the name exists, so a claim file is complete from
/// the instant it exists. Created empty and written after, a claim of a process killed between
/// the two would stay empty, unreadable, and its run would never be trained again.
pub fn claim(runs: &Path, id: &str, claimant: &Claimant) -> io::Result<bool> {
    let path = claim_file(runs, id);
    let draft = write_draft(runs, id, claimant)?;
    let claimed = link_claim(&draft, &path, claimant);
    let _ = fs::remove_file(&draft);
    claimed
}

/// A new file beside the claims holding `claimant`'s line, under a name no other file has
/// (host, process and a count, the next count where a file has the name: one a process of the
/// same pid left, say).
fn write_draft(runs: &Path, id: &str, claimant: &Claimant) -> io::Result<PathBuf> {
    static DRAFTS: AtomicU64 = AtomicU64::new(0);
    loop {
        let count = DRAFTS.fetch_add(1, Ordering::Relaxed);
        let (host, pid) = (&claimant.host, claimant.pid);
        let draft = runs.join(format!("{id}.claim.{host}.{pid}.{count}"));
        match OpenOptions::new().write(true).create_new(true).open(&draft) {
            Ok(mut file) => {
                return match file.write_all(claimant.line().as_bytes()) {
                    Ok(()) => Ok(draft),
                    Err(e) => {
                        let _ = fs::remove_file(&draft);
                        Err(e)
                    }
                };
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Links `draft` to the claim file `path` unless a live holder has it.
fn link_claim(draft: &Path, path: &Path, claimant: &Claimant) -> io::Result<bool> {
    for _ in 0..3 {
        match fs::hard_link(draft, path) {
            Ok(()) => return Ok(true),
            // NFSv3 may resend a link the server has made and report the name taken by it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && same_file(draft, path) => {
                return Ok(true);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match holder_of(path, claimant) {
                Holder::Released => {}
                Holder::Live => return Ok(false),
                Holder::Stale(text) => {
                    if !take_over(path, &text, draft, claimant)? {
                        return Ok(false);
                    }
                }
            },
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// True when `a` and `b` name one file (where the platform says; false elsewhere).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// Who holds a claim, as a claimant sees it.
enum Holder {
    /// No one: the claim was released as it was read.
    Released,
    /// A process that may be running.
    Live,
    /// A process that is gone, or none (a claim an older normlab left empty); the claim's text.
    Stale(String),
}

/// Who holds the claim at `path`, as `claimant` sees it.
fn holder_of(path: &Path, claimant: &Claimant) -> Holder {
    match fs::read_to_string(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Holder::Released,
        // Unreadable (say, removed on another host: NFS's stale handle): someone's.
        Err(_) => Holder::Live,
        Ok(text) => match Claimant::parse(&text) {
            Some(holder) if !claimant.outlived(&holder) => Holder::Live,
            _ => Holder::Stale(text),
        },
    }
}

/// Removes the claim at `path`, read as `stale`, so that `claimant` may link its own: true
/// when it may try, false when another process is taking the claim over. Several processes
/// may find one claim stale at once, and a claim linked since must not be removed, so the
/// removal is made under a takeover lock (`path.takeover`, linked from `draft` as a claim is),
/// after reading the claim again. A lock left by a process that died is removed, and the run
/// left to a later sweep.
fn take_over(path: &Path, stale: &str, draft: &Path, claimant: &Claimant) -> io::Result<bool> {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".takeover");
    let lock = PathBuf::from(lock);
    match fs::hard_link(draft, &lock) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            if let Holder::Stale(_) = holder_of(&lock, claimant) {
                let _ = fs::remove_file(&lock);
            }
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    if fs::read_to_string(path).ok().as_deref() == Some(stale) {
        let _ = fs::remove_file(path);
    }
    let _ = fs::remove_file(&lock);
    Ok(true)
}

/// Gives up the claim on run `id` (after its record is written).
pub fn release(runs: &Path, id: &str) -> io::Result<()> {
    match fs::remove_file(claim_file(runs, id)) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_belongs_to_exactly_one_shard_and_the_slices_are_even() {
        let ids: Vec<String> = (0..600).map(|i| format!("norm=batch,seed={i}")).collect();
        let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        let mut sizes = [0; 4];
        for id in &ids {
            let owners: Vec<usize> = (0..4).filter(|&s| shards[s].holds(id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (110..=190).contains(&n)), "{sizes:?}");
        // Stable: the FNV-1a test vector, so the slices never move between versions.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn shard_specs_are_checked() {
        assert_eq!("2/5".parse(), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1", "a/b", "0/0", "-1/3"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("0 <= I < N"), "{bad}: {err}");
        }
    }

    /// A new empty folder of this process for claims, named after `test`.
    fn empty_folder(test: &str) -> PathBuf {
        let runs = std::env::temp_dir().join(format!("normlab-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&runs);
        fs::create_dir_all(&runs).unwrap();
        runs
    }

    /// Processes racing for a run whose claim a dead process left: exactly one wins, every
    /// time, and nothing is left beside the winner's claim.
    #[test]
    fn of_several_claimants_of_a_stale_claim_exactly_one_wins() {
        let runs = empty_folder("race");
        let me = Claimant::this_process(None);
        let gone = Claimant {
            pid: u32::MAX,
            ..me.clone()
        };
        // Live to each other: this process, each on a shard of its own.
        let claimants: Vec<Claimant> = (0..6)
            .map(|i| Claimant::this_process(Some(Shard { index: i, count: 6 })))
            .collect();
        for round in 0..200 {
            let id = format!("r{round}");
            fs::write(claim_file(&runs, &id), gone.line()).unwrap();
            let barrier = std::sync::Barrier::new(claimants.len());
            let winners: Vec<bool> = std::thread::scope(|scope| {
                let racers: Vec<_> = claimants
                    .iter()
                    .map(|claimant| {
                        let (runs, id, barrier) = (&runs, &id, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            claim(runs, id, claimant).unwrap()
                        })
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            assert_eq!(winners.iter().filter(|&&w| w).count(), 1, "round {round}");
            let winner = &claimants[winners.iter().position(|&w| w).unwrap()];
            assert_eq!(
                fs::read_to_string(claim_file(&runs, &id)).unwrap(),
                winner.line()
            );
        }
        assert_eq!(
            fs::read_dir(&runs).unwrap().count(),
            200,
            "drafts left behind"
        );
        fs::remove_dir_all(&runs).unwrap();
    }

    #[test]
    fn a_claim_is_exclusive_until_released_and_a_dead_holder_is_outlived() {
        let runs = empty_folder("claims");
        let me = Claimant::this_process(None);
        let other_shard = Claimant {
            pid: me.pid + 1,
            ..Claimant::this_process(Some(Shard { index: 1, count: 2 }))
        };
        assert!(claim(&runs, "a", &me).unwrap());
        assert!(
            !claim(&runs, "a", &me).unwrap(),
            "held, even by the same process"
        );
        release(&runs, "a").unwrap();
        assert!(claim(&runs, "a", &me).unwrap());

        // A holder on this host whose process is gone (no process has pid u32::MAX).
        let gone = Claimant {
            pid: u32::MAX,
            ..me.clone()
        };
        fs::write(claim_file(&runs, "b"), gone.line()).unwrap();
        assert!(claim(&runs, "b", &me).unwrap(), "a dead holder is outlived");
        // A holder that runs (this process) on another shard keeps its claim.
        fs::write(claim_file(&runs, "c"), me.line()).unwrap();
        assert!(!claim(&runs, "c", &other_shard).unwrap());
        // The same shard started again (another host, say) takes over its own slice.
        let restarted = Claimant {
            host: "elsewhere".into(),
            ..other_shard.clone()
        };
        fs::write(claim_file(&runs, "d"), other_shard.line()).unwrap();
        assert!(claim(&runs, "d", &restarted).unwrap());
        // A claim read as stale but linked anew before it could be removed stays in place.
        fs::write(claim_file(&runs, "f"), me.line()).unwrap();
        let draft = runs.join("f.draft");
        fs::write(&draft, other_shard.line()).unwrap();
        assert!(take_over(&claim_file(&runs, "f"), &gone.line(), &draft, &other_shard).unwrap());
        fs::remove_file(&draft).unwrap();
        assert!(!claim(&runs, "f", &other_shard).unwrap());
        assert_eq!(
            fs::read_to_string(claim_file(&runs, "f")).unwrap(),
            me.line()
        );
        // A link the file system made but reported as taken (NFSv3 resending it): ours.
        let draft = runs.join("h.draft");
        fs::write(&draft, me.line()).unwrap();
        fs::hard_link(&draft, claim_file(&runs, "h")).unwrap();
        assert!(link_claim(&draft, &claim_file(&runs, "h"), &me).unwrap());
        fs::remove_file(&draft).unwrap();
        // A takeover whose process died: its lock is removed and the run left for later.
        fs::write(claim_file(&runs, "g"), gone.line()).unwrap();
        fs::write(runs.join("g.claim.takeover"), gone.line()).unwrap();
        assert!(!claim(&runs, "g", &me).unwrap());
        assert!(claim(&runs, "g", &me).unwrap());
        // An empty claim, as an older normlab killed between creating and writing it left.
        fs::write(claim_file(&runs, "e"), "").unwrap();
        assert!(
            claim(&runs, "e", &me).unwrap(),
            "an empty claim is no one's"
        );
        // Each claim holds its claimant's line and no draft stays behind.
        assert_eq!(
            fs::read_to_string(claim_file(&runs, "e")).unwrap(),
            me.line()
        );
        let mut left: Vec<String> = fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "a.claim", "b.claim", "c.claim", "d.claim", "e.claim", "f.claim", "g.claim",
                "h.claim"
            ]
        );
        fs::remove_dir_all(&runs).unwrap();
    }
}
