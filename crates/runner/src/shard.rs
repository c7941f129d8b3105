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
//! a time). A results folder must therefore be on a file system with hard links (ext4, XFS,
//! Btrfs, APFS, NTFS, NFS; not FAT): elsewhere the first claim fails, before any run trains,
//! with the file system's error and the folder's name.

use std::fmt;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
    let draft = runs.join(format!("{id}.claim.{}.{}", claimant.host, claimant.pid));
    fs::write(&draft, claimant.line())?;
    let claimed = link_claim(&draft, &path, claimant);
    let removed = fs::remove_file(&draft);
    let claimed = claimed?;
    removed?;
    Ok(claimed)
}

/// Links `draft` to the claim file `path` unless a live holder has it.
fn link_claim(draft: &Path, path: &Path, claimant: &Claimant) -> io::Result<bool> {
    for _ in 0..3 {
        match fs::hard_link(draft, path) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match fs::read_to_string(path) {
                // Released this instant: try again.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
                Ok(holder) => match Claimant::parse(&holder) {
                    Some(holder) if !claimant.outlived(&holder) => return Ok(false),
                    // Gone, or a claim no process holds (one an older normlab left empty):
                    // remove it and try once more to link ours.
                    _ => {
                        let _ = fs::remove_file(path);
                    }
                },
            },
            Err(e) => return Err(e),
        }
    }
    Ok(false)
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

    #[test]
    fn a_claim_is_exclusive_until_released_and_a_dead_holder_is_outlived() {
        let runs = std::env::temp_dir().join(format!("normlab-claims-{}", std::process::id()));
        let _ = fs::remove_dir_all(&runs);
        fs::create_dir_all(&runs).unwrap();
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
            ["a.claim", "b.claim", "c.claim", "d.claim", "e.claim"]
        );
        fs::remove_dir_all(&runs).unwrap();
    }
}
