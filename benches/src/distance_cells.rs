//! What the distance scenario measures, as data: transports, steps and
//! one measured cell. Below both `distance` (which runs them) and `plot`
//! (which draws them), so neither imports the other back.

use crate::measure::Measurement;

/// Which server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OpenSSH's sshd (SFTP subsystem).
    Sftp,
    /// Garage's S3 API.
    S3,
}

impl Transport {
    /// Both, in report order.
    pub const ALL: [Transport; 2] = [Transport::Sftp, Transport::S3];

    /// What the report calls it.
    pub fn title(self) -> &'static str {
        match self {
            Transport::Sftp => "SFTP (OpenSSH sshd on 127.0.0.1)",
            Transport::S3 => "S3 (3-node Garage on 127.0.0.1)",
        }
    }

    pub(crate) fn slug(self) -> &'static str {
        match self {
            Transport::Sftp => "sftp",
            Transport::S3 => "s3",
        }
    }
}

/// The measured steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// First backup of the image into a fresh repository.
    Backup,
    /// Restore of that snapshot into an empty folder.
    Restore,
}

impl Step {
    /// Both, in report order.
    pub const ALL: [Step; 2] = [Step::Backup, Step::Restore];

    /// What the report calls it.
    pub fn title(self) -> &'static str {
        match self {
            Step::Backup => "backup",
            Step::Restore => "restore",
        }
    }
}

/// One measured command.
#[derive(Debug, Clone)]
pub struct DistanceCell {
    /// Where.
    pub transport: Transport,
    /// Round trip added, milliseconds.
    pub rtt_ms: u64,
    /// The variant's label.
    pub variant: String,
    /// Which step.
    pub step: Step,
    /// What it used, or why it failed.
    pub outcome: Result<Measurement, String>,
    /// Checks done on the result.
    pub note: String,
}
