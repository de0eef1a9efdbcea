//! Back-pressure: whether the collector may put more into `incoming/`, as a
//! pure state machine that reports only changes, so the log says "paused"
//! once and "resumed" once rather than once per file.

#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub max_files: Option<u64>,
    pub max_bytes: Option<u64>,
    pub min_free: Option<u64>,
}

/// What the spool holds now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Level {
    pub files: u64,
    pub bytes: u64,
    pub free: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Files { files: u64, limit: u64 },
    Bytes { bytes: u64, limit: u64 },
    Free { free: u64, limit: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Paused(Block),
    Resumed,
}

#[derive(Debug, Default)]
pub struct Gate {
    pub limits: Limits,
    paused: Option<Block>,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            paused: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.paused.is_none()
    }

    /// Whether any limit needs the spool measured.
    pub fn watches_incoming(&self) -> bool {
        self.limits.max_files.is_some() || self.limits.max_bytes.is_some()
    }

    /// Takes a new measurement; returns the change, if the state changed.
    pub fn update(&mut self, level: Level) -> Option<Change> {
        let l = self.limits;
        let block = if let Some(limit) = l.max_files.filter(|m| level.files >= *m) {
            Some(Block::Files {
                files: level.files,
                limit,
            })
        } else if let Some(limit) = l.max_bytes.filter(|m| level.bytes >= *m) {
            Some(Block::Bytes {
                bytes: level.bytes,
                limit,
            })
        } else {
            l.min_free
                .filter(|m| level.free < *m)
                .map(|limit| Block::Free {
                    free: level.free,
                    limit,
                })
        };
        let change = match (self.paused, block) {
            (None, Some(b)) => Some(Change::Paused(b)),
            (Some(_), None) => Some(Change::Resumed),
            _ => None,
        };
        self.paused = block;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_once_and_resumes_once() {
        let mut gate = Gate::new(Limits {
            max_files: Some(10),
            max_bytes: None,
            min_free: Some(100),
        });
        let level = |files, free| Level {
            files,
            bytes: 0,
            free,
        };
        assert_eq!(gate.update(level(5, 1000)), None);
        assert!(gate.is_open());
        assert_eq!(
            gate.update(level(10, 1000)),
            Some(Change::Paused(Block::Files {
                files: 10,
                limit: 10
            }))
        );
        assert_eq!(
            gate.update(level(12, 1000)),
            None,
            "no repeat while still paused"
        );
        assert!(!gate.is_open());
        assert_eq!(gate.update(level(3, 1000)), Some(Change::Resumed));
        assert_eq!(
            gate.update(level(3, 50)),
            Some(Change::Paused(Block::Free {
                free: 50,
                limit: 100
            }))
        );
    }

    #[test]
    fn no_limits_never_pause() {
        let mut gate = Gate::default();
        assert_eq!(
            gate.update(Level {
                files: u64::MAX,
                bytes: u64::MAX,
                free: 0
            }),
            None
        );
        assert!(!gate.watches_incoming());
    }
}
