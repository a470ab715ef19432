//! The YCSB core workloads A–F: which operations, in what proportions, over which keys.

use std::fmt;
use std::str::FromStr;

/// One operation of a mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Read one record.
    Read,
    /// Overwrite one existing record (a blind write).
    Update,
    /// Insert a new record.
    Insert,
    /// Read up to 100 consecutive records (length uniform in 1..=100) from a start key.
    Scan,
    /// Read one record and write it back, in one transaction.
    ReadModifyWrite,
}

impl Op {
    /// Every operation, in a fixed order (used for per-operation statistics).
    pub const ALL: [Op; 5] = [
        Op::Read,
        Op::Update,
        Op::Insert,
        Op::Scan,
        Op::ReadModifyWrite,
    ];

    /// A short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Scan => "scan",
            Op::ReadModifyWrite => "rmw",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Which keys requests go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// YCSB's scrambled zipfian, constant 0.99 (`requestdistribution=zipfian`).
    Zipfian,
    /// YCSB's skewed-latest: recently inserted records are the most popular.
    Latest,
    /// Uniform over all records.
    Uniform,
}

/// A YCSB core workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mix {
    /// Update heavy: 50% reads, 50% updates, zipfian.
    A,
    /// Read mostly: 95% reads, 5% updates, zipfian.
    B,
    /// Read only: 100% reads, zipfian.
    C,
    /// Read latest: 95% reads, 5% inserts, latest.
    D,
    /// Short ranges: 95% scans, 5% inserts, zipfian start keys.
    E,
    /// Read-modify-write: 50% reads, 50% read-modify-writes, zipfian.
    F,
}

impl Mix {
    /// All six workloads.
    pub const ALL: [Mix; 6] = [Mix::A, Mix::B, Mix::C, Mix::D, Mix::E, Mix::F];

    /// The operation proportions, in percent, summing to 100.
    pub fn proportions(self) -> &'static [(Op, u32)] {
        match self {
            Mix::A => &[(Op::Read, 50), (Op::Update, 50)],
            Mix::B => &[(Op::Read, 95), (Op::Update, 5)],
            Mix::C => &[(Op::Read, 100)],
            Mix::D => &[(Op::Read, 95), (Op::Insert, 5)],
            Mix::E => &[(Op::Scan, 95), (Op::Insert, 5)],
            Mix::F => &[(Op::Read, 50), (Op::ReadModifyWrite, 50)],
        }
    }

    /// The request distribution.
    pub fn distribution(self) -> Distribution {
        match self {
            Mix::D => Distribution::Latest,
            _ => Distribution::Zipfian,
        }
    }

    /// Picks an operation from a uniform percentile in `0..100`.
    pub fn pick(self, percentile: u32) -> Op {
        let mut acc = 0;
        for &(op, share) in self.proportions() {
            acc += share;
            if percentile < acc {
                return op;
            }
        }
        self.proportions()[self.proportions().len() - 1].0
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The error for a workload name that is not one of A–F.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMix(pub String);

impl fmt::Display for UnknownMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown YCSB workload {:?} (expected one of A-F)",
            self.0
        )
    }
}

impl std::error::Error for UnknownMix {}

impl FromStr for Mix {
    type Err = UnknownMix;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" => Ok(Mix::A),
            "B" => Ok(Mix::B),
            "C" => Ok(Mix::C),
            "D" => Ok(Mix::D),
            "E" => Ok(Mix::E),
            "F" => Ok(Mix::F),
            _ => Err(UnknownMix(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_sum_to_100_and_pick_follows_them() {
        for mix in Mix::ALL {
            let total: u32 = mix.proportions().iter().map(|&(_, s)| s).sum();
            assert_eq!(total, 100, "{mix}");
            for &(op, share) in mix.proportions() {
                let picked = (0..100).filter(|&p| mix.pick(p) == op).count() as u32;
                assert_eq!(picked, share, "{mix} {op:?}");
            }
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!("a".parse(), Ok(Mix::A));
        assert_eq!(" F ".parse(), Ok(Mix::F));
        assert!("G".parse::<Mix>().is_err());
    }
}
